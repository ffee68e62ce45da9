// Events and control transfers: real-mode IVT, INT/IRET with privilege change,
// gate DPL, double and triple fault, task gate for #DF and nested IRET, call
// gates with parameter copy, far RET to an outer ring, virtual-8086 mode.
#include "harness.h"

namespace anykvm::soft::test {
namespace {

using O = Machine::Outcome;

x86::Insn int_n(uint8_t v) {
  x86::Insn i = op1(0xcd, 2);
  i.imm = v;
  return i;
}

TEST(Events, RealModeIntAndIret) {
  Machine m;
  Cpu& c = m.c();
  m.w32(0x21 * 4, (0x1000u << 16) | 0x0010);
  c.rip = 0x500;
  c.set_eflags(fl::FIXED1 | fl::IF | fl::CF);
  ASSERT_EQ(m.exec(int_n(0x21)), O::Retired);
  EXPECT_EQ(c.seg[1].selector, 0x1000);
  EXPECT_EQ(c.seg[1].base, 0x10000u);
  EXPECT_EQ(c.rip, 0x10u);
  EXPECT_FALSE(c.eflags() & fl::IF);
  EXPECT_EQ(c.gpr[4], 0x8000u - 6);
  EXPECT_EQ(m.r16(0x8000 - 6), 0x502);
  EXPECT_EQ(m.r16(0x8000 - 4), 0);
  EXPECT_EQ(m.r16(0x8000 - 2), fl::FIXED1 | fl::IF | fl::CF);
  ASSERT_EQ(m.exec(op1(0xcf, 1, 2)), O::Retired);  // IRET (16-bit)
  EXPECT_EQ(c.rip, 0x502u);
  EXPECT_EQ(c.seg[1].base, 0u);
  EXPECT_TRUE(c.eflags() & fl::IF);
  EXPECT_TRUE(c.eflags() & fl::CF);
  EXPECT_EQ(c.gpr[4], 0x8000u);
}

TEST(Events, RealModeFarCallAndRet) {
  Machine m;
  Cpu& c = m.c();
  c.rip = 0x100;
  x86::Insn call = op1(0x9a, 5, 2);
  call.imm = 0x0020;
  call.imm2 = 0x2000;
  ASSERT_EQ(m.exec(call), O::Retired);
  EXPECT_EQ(c.seg[1].base, 0x20000u);
  EXPECT_EQ(c.rip, 0x20u);
  EXPECT_EQ(m.r16(0x8000 - 2), 0);      // CS
  EXPECT_EQ(m.r16(0x8000 - 4), 0x105);  // IP
  ASSERT_EQ(m.exec(op1(0xcb, 1, 2)), O::Retired);
  EXPECT_EQ(c.seg[1].base, 0u);
  EXPECT_EQ(c.rip, 0x105u);
  EXPECT_EQ(c.gpr[4], 0x8000u);
}

TEST(Events, RealToProtectedSwitch) {
  Machine m;
  m.protected_mode();  // only to build the GDT in memory
  m.real_mode();
  Cpu& c = m.c();
  m.w16(0x600, 0x7f);
  m.w32(0x602, k_gdt);
  ASSERT_EQ(m.exec(with_mem(op2(0x01, 7, 2), 2, 0x600)), O::Retired);  // LGDT [0x600]
  EXPECT_EQ(c.gdtr.base, k_gdt);
  c.gpr[0] = cr0::PE;
  ASSERT_EQ(m.exec(with_reg(op2(0x22, 3), 0, 0)), O::Retired);  // MOV CR0, EAX
  EXPECT_TRUE(c.protected_mode());
  x86::Insn jmp = op1(0xea, 7, 4);  // JMP 0x08:0x00012345 (66-prefixed in 16-bit code)
  jmp.imm = 0x12345;
  jmp.imm2 = CODE0;
  ASSERT_EQ(m.exec(jmp), O::Retired);
  EXPECT_EQ(c.rip, 0x12345u);
  EXPECT_EQ(c.seg[1].selector, CODE0);
  EXPECT_TRUE(c.code32());
  EXPECT_EQ(c.cpl, 0);
  EXPECT_EQ(c.seg[1].limit, 0xffffffffu);
}

// Ring-3 flat state with the ring-0 stack at 0x90000 from the TSS.
void enter_ring3(Machine& m) {
  Cpu& c = m.c();
  c.cpl = 3;
  Descriptor d;
  read_descriptor(c, CODE3, d);
  c.seg[1] = d.to_segment(CODE3);
  read_descriptor(c, DATA3, d);
  for (uint8_t s : {0, 2, 3, 4, 5}) c.seg[s] = d.to_segment(DATA3);
  c.gpr[4] = 0x70000;
  c.rip = 0x4000;
  c.set_eflags(fl::FIXED1 | fl::IF);
}

TEST(Events, SoftwareIntFromRing3SwitchesStackAndIretReturns) {
  Machine m;
  m.protected_mode();
  m.idt_gate(0x80, gate_desc(CODE0, 0x6000, 0xee));  // DPL 3 interrupt gate
  enter_ring3(m);
  Cpu& c = m.c();
  ASSERT_EQ(m.exec(int_n(0x80)), O::Retired);
  EXPECT_EQ(c.cpl, 0);
  EXPECT_EQ(c.rip, 0x6000u);
  EXPECT_EQ(c.seg[2].selector, DATA0);
  EXPECT_EQ(c.gpr[4], 0x90000u - 20);
  EXPECT_EQ(m.r32(0x90000 - 4), DATA3);     // old SS
  EXPECT_EQ(m.r32(0x90000 - 8), 0x70000u);  // old ESP
  EXPECT_TRUE(m.r32(0x90000 - 12) & fl::IF);
  EXPECT_EQ(m.r32(0x90000 - 16), CODE3);
  EXPECT_EQ(m.r32(0x90000 - 20), 0x4002u);
  EXPECT_FALSE(c.eflags() & fl::IF);
  // Kernel data in DS, then IRET to ring 3 nulls it.
  c.load_segment(3, DATA0);
  ASSERT_EQ(m.exec(op1(0xcf)), O::Retired);
  EXPECT_EQ(c.cpl, 3);
  EXPECT_EQ(c.rip, 0x4002u);
  EXPECT_EQ(c.gpr[4], 0x70000u);
  EXPECT_EQ(c.seg[2].selector, DATA3);
  EXPECT_TRUE(c.seg[3].unusable);
  EXPECT_TRUE(c.eflags() & fl::IF);
}

TEST(Events, GateDplBlocksSoftwareInt) {
  Machine m;
  m.protected_mode();
  m.idt_gate(0x81, gate_desc(CODE0, 0x6000, 0x8e));  // DPL 0
  m.idt_gate(13, gate_desc(CODE0, 0x6100, 0x8e));
  enter_ring3(m);
  Cpu& c = m.c();
  // The INT instruction itself completes by delivering the #GP its gate raised.
  ASSERT_EQ(m.exec(int_n(0x81)), O::Retired);
  EXPECT_EQ(c.rip, 0x6100u);
  EXPECT_EQ(m.r32(0x90000 - 24), 0x81u * 8 + 2);  // error code: IDT, not EXT
  EXPECT_EQ(m.r32(0x90000 - 20), 0x4000u);        // fault: EIP of the INT
}

TEST(Events, DoubleFaultFromPageFaultDelivery) {
  Machine m;
  m.protected_mode();
  m.idt_gate(14, gate_desc(CODE0, 0x6000, 0x0e));  // not present -> #NP during #PF
  m.idt_gate(8, gate_desc(CODE0, 0x6800, 0x8e));
  Cpu& c = m.c();
  c.rip = 0x4444;
  c.deliver_exception(fault(Vec::PF, 2));
  EXPECT_EQ(c.rip, 0x6800u);
  EXPECT_EQ(m.r32(0x80000 - 16), 0u);  // #DF error code 0
  EXPECT_FALSE(c.exit_pending);
}

TEST(Events, BenignThenContributoryIsNotDoubleFault) {
  Machine m;
  m.protected_mode();
  m.idt_gate(6, gate_desc(CODE0, 0x6000, 0x0e));  // #UD gate not present -> #NP
  m.idt_gate(11, gate_desc(CODE0, 0x6200, 0x8e));
  m.idt_gate(8, gate_desc(CODE0, 0x6800, 0x8e));
  Cpu& c = m.c();
  c.deliver_exception(fault(Vec::UD));
  EXPECT_EQ(c.rip, 0x6200u);
  EXPECT_EQ(m.r32(0x80000 - 16), 6u * 8 + 2 + 1);  // #NP(IDT vector 6, EXT)
}

TEST(Events, TripleFaultIsShutdown) {
  Machine m;
  m.protected_mode();
  m.c().idtr.limit = 0;  // every delivery faults
  m.c().deliver_exception(fault(Vec::GP, 0));
  EXPECT_TRUE(m.c().exit_pending);
  EXPECT_EQ(m.c().exit.reason, cpu::ExitReason::Shutdown);
}

TEST(Events, TaskGateForDoubleFaultAndNestedIret) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  // TSS_B: the #DF task (as Linux i386 sets up), its own stack.
  m.w32(k_tss2 + 0x1c, 0);        // CR3 (paging off)
  m.w32(k_tss2 + 0x20, 0x6900);   // EIP
  m.w32(k_tss2 + 0x24, fl::FIXED1);
  m.w32(k_tss2 + 0x38, 0x60000);  // ESP
  m.w16(k_tss2 + 0x4c, CODE0);
  for (uint32_t off : {0x48u, 0x50u, 0x54u, 0x58u, 0x5cu}) m.w16(k_tss2 + off, DATA0);
  m.idt_gate(8, gate_desc(TSS_B, 0, 0x85));
  m.idt_gate(14, gate_desc(CODE0, 0, 0x0e));  // not present
  c.rip = 0x4444;
  c.gpr[0] = 0xaaaa;
  c.deliver_exception(fault(Vec::PF, 0));
  EXPECT_EQ(c.tr.selector, TSS_B);
  EXPECT_EQ(c.rip, 0x6900u);
  EXPECT_TRUE(c.eflags() & fl::NT);
  EXPECT_TRUE(c.cr0 & cr0::TS);
  EXPECT_EQ(m.r16(k_tss2), TSS_A);                  // back-link
  EXPECT_EQ(m.r8(k_gdt + TSS_B + 5) & 0xf, 0xb);    // new TSS busy
  EXPECT_EQ(m.r8(k_gdt + TSS_A + 5) & 0xf, 0xb);    // old stays busy (nested)
  EXPECT_EQ(m.r32(k_tss + 0x20), 0x4444u);          // old EIP saved
  EXPECT_EQ(m.r32(k_tss + 0x28), 0xaaaau);          // old EAX saved
  EXPECT_EQ(c.gpr[4], 0x60000u - 4);                // #DF error code pushed
  EXPECT_EQ(m.r32(0x60000 - 4), 0u);
  // IRET with NT returns to the outer task.
  c.gpr[0] = 0;
  ASSERT_EQ(m.exec(op1(0xcf)), O::Retired);
  EXPECT_EQ(c.tr.selector, TSS_A);
  EXPECT_EQ(c.rip, 0x4444u);
  EXPECT_EQ(c.gpr[0], 0xaaaau);
  EXPECT_EQ(m.r8(k_gdt + TSS_B + 5) & 0xf, 0x9);  // released
  EXPECT_EQ(m.r32(k_tss2 + 0x20), 0x6901u);       // the IRET's successor saved
}

TEST(Events, JmpToTssSwapsBusyBits) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  m.w32(k_tss2 + 0x20, 0x5555);
  m.w32(k_tss2 + 0x24, fl::FIXED1);
  m.w16(k_tss2 + 0x4c, CODE0);
  for (uint32_t off : {0x48u, 0x50u, 0x54u, 0x58u, 0x5cu}) m.w16(k_tss2 + off, DATA0);
  x86::Insn jmp = op1(0xea, 7);
  jmp.imm2 = TSS_B;
  c.rip = 0x4000;
  ASSERT_EQ(m.exec(jmp), O::Retired);
  EXPECT_EQ(c.tr.selector, TSS_B);
  EXPECT_EQ(c.rip, 0x5555u);
  EXPECT_FALSE(c.eflags() & fl::NT);
  EXPECT_EQ(m.r8(k_gdt + TSS_A + 5) & 0xf, 0x9);
  EXPECT_EQ(m.r8(k_gdt + TSS_B + 5) & 0xf, 0xb);
  EXPECT_EQ(m.r32(k_tss + 0x20), 0x4007u);
}

TEST(Events, CallGateWithPrivilegeChangeAndFarRet) {
  Machine m;
  m.protected_mode();
  m.w64(k_gdt + 0x38, gate_desc(CODE0, 0x7000, 0xec, 2));  // 32-bit call gate, DPL 3, 2 params
  enter_ring3(m);
  Cpu& c = m.c();
  m.w32(0x70000, 0x11111111);  // params at the caller's ESP
  m.w32(0x70004, 0x22222222);
  x86::Insn call = op1(0x9a, 7);
  call.imm = 0;  // offset ignored for gates
  call.imm2 = CALLGATE;
  ASSERT_EQ(m.exec(call), O::Retired);
  EXPECT_EQ(c.cpl, 0);
  EXPECT_EQ(c.rip, 0x7000u);
  EXPECT_EQ(c.seg[1].selector, CODE0);
  EXPECT_EQ(c.seg[2].selector, DATA0);
  EXPECT_EQ(c.gpr[4], 0x90000u - 24);
  EXPECT_EQ(m.r32(0x90000 - 4), DATA3);
  EXPECT_EQ(m.r32(0x90000 - 8), 0x70000u);
  EXPECT_EQ(m.r32(0x90000 - 12), 0x22222222u);
  EXPECT_EQ(m.r32(0x90000 - 16), 0x11111111u);
  EXPECT_EQ(m.r32(0x90000 - 20), CODE3);
  EXPECT_EQ(m.r32(0x90000 - 24), 0x4007u);
  // RET far 8 back to ring 3 releases the parameters on both stacks.
  x86::Insn ret = op1(0xca, 3);
  ret.imm = 8;
  ASSERT_EQ(m.exec(ret), O::Retired);
  EXPECT_EQ(c.cpl, 3);
  EXPECT_EQ(c.rip, 0x4007u);
  EXPECT_EQ(c.seg[2].selector, DATA3);
  EXPECT_EQ(c.gpr[4], 0x70008u);
}

TEST(Events, CallGateDplTooLow) {
  Machine m;
  m.protected_mode();
  m.w64(k_gdt + 0x38, gate_desc(CODE0, 0x7000, 0x8c));  // DPL 0
  m.idt_gate(13, gate_desc(CODE0, 0x6100, 0x8e));
  enter_ring3(m);
  x86::Insn call = op1(0x9a, 7);
  call.imm2 = CALLGATE;
  ASSERT_EQ(m.exec(call), O::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::GP);
  EXPECT_EQ(m.last_fault.error_code, 0x38u);
}

// Build an IRET frame on the ring-0 stack that enters v86 at 0x2000:0x0100.
void enter_v86(Machine& m, uint32_t iopl) {
  Cpu& c = m.c();
  uint32_t sp = 0x80000 - 36;
  uint32_t frame[9] = {0x0100, 0x2000, fl::FIXED1 | fl::VM | fl::IF | (iopl << 12), 0x0ffe, 0x3000,
                       0x4000, 0x5000, 0x6000, 0x7000};
  for (int i = 0; i < 9; ++i) m.w32(sp + 4 * i, frame[i]);
  c.gpr[4] = sp;
  ASSERT_EQ(m.exec(op1(0xcf)), O::Retired);
}

TEST(Events, V86EntryAndIoplTraps) {
  Machine m;
  m.protected_mode();
  m.idt_gate(13, gate_desc(CODE0, 0x6100, 0x8e));
  Cpu& c = m.c();
  enter_v86(m, 0);
  EXPECT_TRUE(c.v86());
  EXPECT_EQ(c.cpl, 3);
  EXPECT_EQ(c.seg[1].base, 0x20000u);
  EXPECT_EQ(c.seg[2].base, 0x30000u);
  EXPECT_EQ(c.seg[3].base, 0x50000u);
  EXPECT_EQ(c.gpr[4], 0x0ffeu);
  EXPECT_EQ(c.rip, 0x100u);
  // CLI with IOPL 0 -> #GP(0) to the ring-0 handler with the v86 frame.
  ASSERT_EQ(m.exec(op1(0xfa)), O::Faulted);
  EXPECT_FALSE(c.v86());
  EXPECT_EQ(c.cpl, 0);
  EXPECT_EQ(c.rip, 0x6100u);
  uint32_t top = 0x90000;
  EXPECT_EQ(m.r32(top - 4), 0x7000u);   // GS
  EXPECT_EQ(m.r32(top - 8), 0x6000u);   // FS
  EXPECT_EQ(m.r32(top - 12), 0x5000u);  // DS
  EXPECT_EQ(m.r32(top - 16), 0x4000u);  // ES
  EXPECT_EQ(m.r32(top - 20), 0x3000u);  // SS
  EXPECT_EQ(m.r32(top - 24), 0x0ffeu);  // ESP
  EXPECT_TRUE(m.r32(top - 28) & fl::VM);
  EXPECT_EQ(m.r32(top - 32), 0x2000u);  // CS
  EXPECT_EQ(m.r32(top - 36), 0x100u);   // EIP of CLI
  EXPECT_EQ(m.r32(top - 40), 0u);       // error code
  EXPECT_TRUE(c.seg[3].unusable);
  // INT n, PUSHF, POPF, IRET and STI are IOPL-sensitive too.
  for (uint8_t op : {uint8_t(0xcd), uint8_t(0x9c), uint8_t(0x9d), uint8_t(0xcf), uint8_t(0xfb)}) {
    enter_v86(m, 0);
    x86::Insn in = op1(op, op == 0xcd ? 2 : 1, 2);
    in.imm = 0x21;
    EXPECT_EQ(m.exec(in), O::Faulted) << int(op);
    EXPECT_EQ(m.last_fault.vector, Vec::GP);
  }
}

TEST(Events, V86IntWithIopl3GoesThroughIdt) {
  Machine m;
  m.protected_mode();
  m.idt_gate(0x21, gate_desc(CODE0, 0x6400, 0xee));
  Cpu& c = m.c();
  enter_v86(m, 3);
  ASSERT_EQ(m.exec(int_n(0x21)), O::Retired);
  EXPECT_EQ(c.rip, 0x6400u);
  EXPECT_EQ(c.cpl, 0);
  EXPECT_EQ(m.r32(0x90000 - 36), 0x102u);  // return IP after INT
  // CLI is allowed at IOPL 3.
  enter_v86(m, 3);
  EXPECT_EQ(m.exec(op1(0xfa)), O::Retired);
  EXPECT_FALSE(c.eflags() & fl::IF);
}

TEST(Events, StiShadowHltAndPopfRules) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.set_eflags(fl::FIXED1);
  ASSERT_EQ(m.exec(op1(0xfb)), O::Retired);
  EXPECT_EQ(c.interrupt_shadow, 2);
  c.interrupt_shadow = 0;
  ASSERT_EQ(m.exec(op1(0xfb)), O::Retired);  // IF already 1: no shadow
  EXPECT_EQ(c.interrupt_shadow, 0);
  c.rip = 0x100;
  ASSERT_EQ(m.exec(op1(0xf4)), O::Retired);
  EXPECT_TRUE(c.halted);
  EXPECT_EQ(c.exit.reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(c.rip, 0x101u);
  // Ring 3 with IOPL 0: POPF silently keeps IF and IOPL.
  enter_ring3(m);
  c.gpr[4] = 0x70000;
  m.w32(0x70000, fl::FIXED1 | fl::IOPL | fl::CF);
  ASSERT_EQ(m.exec(op1(0x9d)), O::Retired);
  EXPECT_TRUE(c.eflags() & fl::IF);
  EXPECT_EQ(c.iopl(), 0u);
  EXPECT_TRUE(c.eflags() & fl::CF);
  ASSERT_EQ(m.exec(op1(0xfa)), O::Faulted);  // CLI at CPL 3 > IOPL
}

}  // namespace
}  // namespace anykvm::soft::test
