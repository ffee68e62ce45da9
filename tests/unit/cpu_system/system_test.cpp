// System instructions: CR/DR moves and their #GP rules, descriptor-table
// instructions, LAR/LSL/VERR/ARPL, CPUID (table, out-of-range rule, dynamic
// bits), MSRs, SYSENTER/SYSEXIT, the I/O permission bitmap, breakpoints and
// single-step.
#include <cpu/backend.h>

#include "cpu/soft/cpuid_msr.h"
#include "harness.h"

namespace anykvm::soft::test {
namespace {

using O = Machine::Outcome;

TEST(System, MovCr0Rules) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.gpr[0] = cr0::PG;  // PG without PE
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 0, 0)), O::Faulted);
  c.gpr[0] = cr0::PE | cr0::NW;  // NW without CD
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 0, 0)), O::Faulted);
  c.gpr[0] = cr0::PE | cr0::WP;
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 0, 0)), O::Retired);
  EXPECT_EQ(c.cr0, cr0::PE | cr0::WP | cr0::ET);
  // MOV EBX, CR0.
  EXPECT_EQ(m.exec(with_reg(op2(0x20, 3), 0, 3)), O::Retired);
  EXPECT_EQ(c.gpr[3], cr0::PE | cr0::WP | cr0::ET);
  // CR4.VME is not implemented: #GP.
  c.gpr[0] = cr4::VME;
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 4, 0)), O::Faulted);
  // CR1 is #UD.
  EXPECT_EQ(m.exec(with_reg(op2(0x20, 3), 1, 0)), O::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::UD);
}

TEST(System, PrivilegedAtCpl3) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.cpl = 3;
  EXPECT_EQ(m.exec(with_reg(op2(0x20, 3), 0, 0)), O::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::GP);
  EXPECT_EQ(m.exec(op2(0x32)), O::Faulted);  // RDMSR
  EXPECT_EQ(m.exec(op1(0xf4)), O::Faulted);  // HLT
}

TEST(System, LmswSmswClts) {
  Machine m;
  Cpu& c = m.c();
  c.gpr[0] = 0xf;
  EXPECT_EQ(m.exec(with_reg(op2(0x01, 3), 6, 0)), O::Retired);  // LMSW AX
  EXPECT_TRUE(c.cr0 & cr0::PE);
  EXPECT_TRUE(c.cr0 & cr0::TS);
  c.gpr[0] = 0;  // LMSW cannot clear PE
  EXPECT_EQ(m.exec(with_reg(op2(0x01, 3), 6, 0)), O::Retired);
  EXPECT_TRUE(c.cr0 & cr0::PE);
  c.cr0 |= cr0::TS;
  EXPECT_EQ(m.exec(op2(0x06)), O::Retired);
  EXPECT_FALSE(c.cr0 & cr0::TS);
  EXPECT_EQ(m.exec(with_reg(op2(0x01, 3), 4, 1)), O::Retired);  // SMSW ECX
  EXPECT_EQ(uint32_t(c.gpr[1]), uint32_t(c.cr0));
}

TEST(System, SgdtLldtLtrStr) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  EXPECT_EQ(m.exec(with_mem(op2(0x01, 7), 0, 0x700)), O::Retired);  // SGDT [0x700]
  EXPECT_EQ(m.r16(0x700), 0x7f);
  EXPECT_EQ(m.r32(0x702), k_gdt);
  // LDT descriptor at 0x48 -> LLDT.
  m.w64(k_gdt + 0x48, seg_desc(0x8000, 0xff, 0x82, 0));
  c.gpr[0] = 0x48;
  EXPECT_EQ(m.exec(with_reg(op2(0x00, 3), 2, 0)), O::Retired);
  EXPECT_EQ(c.ldtr.base, 0x8000u);
  // A data segment in the LDT, selector 0x04|TI.
  m.w64(0x8000, seg_desc(0x1230, 0xffff, 0x92, 0));
  c.load_segment(4, 0x04);
  EXPECT_EQ(c.seg[4].base, 0x1230u);
  // LTR of a busy TSS -> #GP; of an available one -> busy.
  c.gpr[0] = TSS_A;
  EXPECT_EQ(m.exec(with_reg(op2(0x00, 3), 3, 0)), O::Faulted);
  c.gpr[0] = TSS_B;
  EXPECT_EQ(m.exec(with_reg(op2(0x00, 3), 3, 0)), O::Retired);
  EXPECT_EQ(m.r8(k_gdt + TSS_B + 5) & 0xf, 0xb);
  EXPECT_EQ(m.exec(with_reg(op2(0x00, 3), 1, 2)), O::Retired);  // STR EDX
  EXPECT_EQ(c.gpr[2], TSS_B);
}

TEST(System, LarLslVerrArpl) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.gpr[1] = CODE3;
  EXPECT_EQ(m.exec(with_reg(op2(0x02, 3), 0, 1)), O::Retired);  // LAR EAX, ECX
  EXPECT_TRUE(c.eflags() & fl::ZF);
  EXPECT_EQ(c.gpr[0], 0x00c0fb00u);  // access rights masked by 00F0FF00h
  EXPECT_EQ(m.exec(with_reg(op2(0x03, 3), 0, 1)), O::Retired);  // LSL EAX, ECX
  EXPECT_EQ(c.gpr[0], 0xffffffffu);
  c.gpr[1] = 0x1f8;  // beyond the GDT
  EXPECT_EQ(m.exec(with_reg(op2(0x03, 3), 0, 1)), O::Retired);
  EXPECT_FALSE(c.eflags() & fl::ZF);
  // VERW on a code segment: not writable.
  c.gpr[1] = CODE0;
  EXPECT_EQ(m.exec(with_reg(op2(0x00, 3), 5, 1)), O::Retired);
  EXPECT_FALSE(c.eflags() & fl::ZF);
  c.gpr[1] = DATA0;
  EXPECT_EQ(m.exec(with_reg(op2(0x00, 3), 4, 1)), O::Retired);  // VERR
  EXPECT_TRUE(c.eflags() & fl::ZF);
  // ARPL CX, DX: raises RPL to 3.
  c.gpr[1] = 0x10;
  c.gpr[2] = 0x3;
  EXPECT_EQ(m.exec(with_reg(op1(0x63, 2), 2, 1)), O::Retired);
  EXPECT_EQ(c.gpr[1] & 0xffff, 0x13u);
  EXPECT_TRUE(c.eflags() & fl::ZF);
  // Real mode: #UD.
  m.real_mode();
  EXPECT_EQ(m.exec(with_reg(op2(0x02, 3), 0, 1)), O::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::UD);
}

TEST(System, CpuidTableAndRules) {
  Machine m;
  Cpu& c = m.c();
  c.cpuid_table = cpu::soft_supported_cpuid();
  c.gpr[0] = 0;
  EXPECT_EQ(m.exec(op2(0xa2)), O::Retired);
  EXPECT_EQ(c.gpr[3], 0x756e6547u);  // "Genu"
  uint32_t max_basic = uint32_t(c.gpr[0]);
  c.gpr[0] = 1;
  EXPECT_EQ(m.exec(op2(0xa2)), O::Retired);
  constexpr uint32_t needed = 0x1 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x800 | 0x2000 |
                              0x8000 | 0x10000 | 0x800000 | 0x1000000 | 0x2000000 | 0x4000000;
  EXPECT_EQ(uint32_t(c.gpr[2]) & needed, needed);  // qemu32's features
  EXPECT_TRUE(c.gpr[1] & 1);                       // SSE3
  // APIC bit follows APIC_BASE.EN.
  c.apic_base &= ~(1u << 11);
  c.gpr[0] = 1;
  m.exec(op2(0xa2));
  EXPECT_FALSE(c.gpr[2] & 0x200);
  // Out-of-range basic leaf answers as the highest basic leaf.
  uint32_t hi[4], oor[4];
  cpuid_query(c, max_basic, 0, hi);
  cpuid_query(c, max_basic + 100, 0, oor);
  EXPECT_EQ(hi[0], oor[0]);
  EXPECT_EQ(hi[1], oor[1]);
  cpuid_query(c, 0x80000100, 0, oor);
  EXPECT_EQ(hi[0], oor[0]);
}

TEST(System, MsrReadWriteRules) {
  Machine m;
  Cpu& c = m.c();
  uint64_t v;
  EXPECT_TRUE(msr_write(c, 0x174, 0x10, false));
  EXPECT_TRUE(msr_read(c, 0x174, v, false));
  EXPECT_EQ(v, 0x10u);
  EXPECT_FALSE(msr_write(c, 0x277, 0x0202020202020202ull, false));  // PAT type 2 invalid
  EXPECT_TRUE(msr_write(c, 0x277, 0x0007040600070406ull, false));
  EXPECT_FALSE(msr_read(c, 0x12345, v, false));                    // unknown: #GP
  EXPECT_FALSE(msr_write(c, 0xfe, 0, false));                      // MTRRcap read-only
  EXPECT_TRUE(msr_write(c, 0x2ff, 0xc06, false));
  EXPECT_FALSE(msr_write(c, 0x401, 5, false));                     // MC0_STATUS: guest may only clear
  EXPECT_TRUE(msr_write(c, 0x401, 5, true));
  EXPECT_FALSE(msr_write(c, 0xc0000080, efer::NXE, false));        // NX not in the guest's CPUID
  c.cpuid_table = cpu::soft_supported_cpuid();
  EXPECT_TRUE(msr_write(c, 0xc0000080, efer::NXE, false));
  // TSC writes move the offset; reads are monotonic.
  EXPECT_TRUE(msr_write(c, 0x10, 1000000000000ull, false));
  uint64_t t1, t2;
  msr_read(c, 0x10, t1, false);
  msr_read(c, 0x10, t2, false);
  EXPECT_GE(t1, 1000000000000ull);
  EXPECT_GE(t2, t1);
  // WRMSR/RDMSR instructions.
  c.gpr[1] = 0x175;
  c.gpr[0] = 0x1234;
  c.gpr[2] = 0;
  EXPECT_EQ(m.exec(op2(0x30)), O::Retired);
  EXPECT_EQ(c.sysenter_esp, 0x1234u);
  c.gpr[1] = 0x9999;
  EXPECT_EQ(m.exec(op2(0x32)), O::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::GP);
  // The index list names MSRs that all read back.
  for (uint32_t i : cpu::soft_msr_index_list()) EXPECT_TRUE(msr_read(c, i, v, true)) << std::hex << i;
}

TEST(System, SysenterSysexit) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.sysenter_cs = CODE0;
  c.sysenter_esp = 0x88000;
  c.sysenter_eip = 0xc0001000;
  c.cpl = 3;
  EXPECT_EQ(m.exec(op2(0x34)), O::Retired);
  EXPECT_EQ(c.cpl, 0);
  EXPECT_EQ(c.rip, 0xc0001000u);
  EXPECT_EQ(c.seg[2].selector, DATA0);
  c.gpr[1] = 0x7000;
  c.gpr[2] = 0x4000;
  EXPECT_EQ(m.exec(op2(0x35)), O::Retired);
  EXPECT_EQ(c.cpl, 3);
  EXPECT_EQ(c.seg[1].selector, CODE3);
  EXPECT_EQ(c.seg[2].selector, DATA3);
  EXPECT_EQ(c.rip, 0x4000u);
  EXPECT_EQ(c.gpr[4], 0x7000u);
}

TEST(System, IoPermissionBitmap) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  EXPECT_NO_THROW(check_io(c, 0x3f8, 1));  // CPL 0 <= IOPL 0
  c.cpl = 3;
  EXPECT_THROW(check_io(c, 0x3f8, 1), Fault);
  m.w8(k_tss + 0x68 + 0x3f8 / 8, 0xfe);  // allow port 0x3f8 only
  EXPECT_NO_THROW(check_io(c, 0x3f8, 1));
  EXPECT_THROW(check_io(c, 0x3f8, 2), Fault);
  // IOPL 3 lets CPL 3 through without the bitmap.
  c.set_eflags(fl::FIXED1 | fl::IOPL);
  EXPECT_NO_THROW(check_io(c, 0x60, 4));
}

TEST(Debug, InstructionBreakpointAndRf) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  m.idt_gate(1, gate_desc(CODE0, 0x6000, 0x8e));
  c.dr[0] = 0x4000;
  c.dr7 = 0x401;  // L0, execute
  debug_dr7_changed(c);
  c.rip = 0x4000;
  ASSERT_TRUE(debug_active(c));
  try {
    debug_before_insn(c);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, Vec::DB);
    c.deliver_exception(f);
  }
  EXPECT_EQ(c.dr6 & 0xf, 1u);
  EXPECT_EQ(m.r32(0x80000 - 12), 0x4000u);  // fault: EIP of the instruction
  // With RF set the breakpoint is suppressed for one instruction.
  c.rip = 0x4000;
  c.eflags_rest |= fl::RF;
  EXPECT_NO_THROW(debug_before_insn(c));
  debug_after_insn(c, false);
  EXPECT_FALSE(c.eflags_rest & fl::RF);
}

TEST(Debug, DataBreakpointTrapsAfterWrite) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  m.idt_gate(1, gate_desc(CODE0, 0x6000, 0x8e));
  c.dr[1] = 0x5004;
  c.dr7 = 0x400 | (1u << 2) | (1u << 20) | (3u << 22);  // L1, write, 4 bytes
  debug_dr7_changed(c);
  c.rip = 0x4000;
  debug_before_insn(c);
  c.write<uint32_t>(3, 0x5000, 1);  // no overlap
  c.write<uint16_t>(3, 0x5006, 1);  // overlaps 0x5004..0x5007
  c.rip = 0x4003;                   // instruction retired
  debug_after_insn(c, false);
  EXPECT_EQ(c.dr6 & 0xf, 2u);
  EXPECT_EQ(c.rip, 0x6000u);
  EXPECT_EQ(m.r32(0x80000 - 12), 0x4003u);  // trap: next instruction
  // Reads do not match a write-only breakpoint.
  c.dr6 = 0xffff0ff0;
  debug_before_insn(c);
  c.read<uint32_t>(3, 0x5004);
  debug_after_insn(c, false);
  EXPECT_EQ(c.dr6 & 0xf, 0u);
}

TEST(Debug, SingleStepAndMovSsShadow) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  m.idt_gate(1, gate_desc(CODE0, 0x6000, 0x8e));
  c.set_eflags(fl::FIXED1 | fl::TF);
  c.rip = 0x4001;
  c.interrupt_shadow = 1;  // the instruction was MOV SS
  debug_after_insn(c, true);
  EXPECT_EQ(c.rip, 0x4001u);  // held back
  c.interrupt_shadow = 0;
  c.rip = 0x4002;
  debug_after_insn(c, true);
  EXPECT_EQ(c.rip, 0x6000u);
  EXPECT_TRUE(c.dr6 & (1u << 14));  // BS
  EXPECT_FALSE(c.eflags() & fl::TF);
}

TEST(Debug, GeneralDetect) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.dr7 = 0x400 | (1u << 13);
  EXPECT_EQ(m.exec(with_reg(op2(0x21, 3), 0, 0)), O::Faulted);  // MOV EAX, DR0
  EXPECT_EQ(m.last_fault.vector, Vec::DB);
  EXPECT_TRUE(c.dr6 & (1u << 13));
  EXPECT_FALSE(c.dr7 & (1u << 13));
  // DR4 aliases DR6 without CR4.DE, #UD with it.
  EXPECT_EQ(m.exec(with_reg(op2(0x21, 3), 4, 0)), O::Retired);
  EXPECT_EQ(c.gpr[0], c.dr6);
  c.cr4 |= cr4::DE;
  EXPECT_EQ(m.exec(with_reg(op2(0x21, 3), 4, 0)), O::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::UD);
}

TEST(Debug, Int3AndIcebp) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  m.idt_gate(3, gate_desc(CODE0, 0x6300, 0x8e));
  m.idt_gate(1, gate_desc(CODE0, 0x6100, 0x8e));
  c.rip = 0x4000;
  EXPECT_EQ(m.exec(op1(0xcc)), O::Retired);
  EXPECT_EQ(c.rip, 0x6300u);
  EXPECT_EQ(m.r32(0x80000 - 12), 0x4001u);  // trap
  c.rip = 0x4000;
  c.gpr[4] = 0x80000;
  c.cpl = 0;
  EXPECT_EQ(m.exec(op1(0xf1)), O::Retired);
  EXPECT_EQ(c.rip, 0x6100u);
  EXPECT_EQ(m.r32(0x80000 - 12), 0x4001u);
}

}  // namespace
}  // namespace anykvm::soft::test
