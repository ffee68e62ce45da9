// Control-flow and flag instructions of the system area: INT n, INT3, INTO,
// INT1/ICEBP, IRET, far JMP/CALL/RET (EA, 9A, CA, CB, FF /3, FF /5),
// PUSHF/POPF, CLI/STI, HLT. IOPL sensitivity in protected and virtual-8086
// mode follows SDM vol. 2 (each instruction's operation) and vol. 3, 20.2.7;
// the STI interrupt shadow 6.8.3. Leaves out: VME/PVI virtual interrupt flags.
#include "cpu/soft/events/events.h"
#include "cpu/soft/exec/system_util.h"
#include "cpu/soft/exec/system_handlers.h"

namespace anykvm::soft {
namespace {

using sys::advance;
using sys::next_ip;

// v86 software interrupts and IRET need IOPL 3 without VME (20.2.7).
void v86_iopl_check(const Cpu& c) {
  if (c.v86() && c.iopl() < 3) throw fault(Vec::GP, 0);
}

void h_int(Cpu& c, const Insn& i) {
  v86_iopl_check(c);
  c.deliver_interrupt(uint8_t(i.imm), true, next_ip(c, i));
}

void h_int3(Cpu& c, const Insn& i) {
  v86_iopl_check(c);
  c.deliver_interrupt(uint8_t(Vec::BP), true, next_ip(c, i));
}

void h_into(Cpu& c, const Insn& i) {
  if (c.long_mode() && c.seg[sreg::CS].l) throw fault(Vec::UD);
  if (!c.get_of()) {
    advance(c, i);
    return;
  }
  v86_iopl_check(c);
  c.deliver_interrupt(uint8_t(Vec::OF), true, next_ip(c, i));
}

void h_icebp(Cpu& c, const Insn& i) {
  // INT1: a trap-class #DB without the gate DPL check (vol. 2, INT n notes).
  deliver_with_escalation(c, uint8_t(Vec::DB), EventKind::Icebp, false, 0, next_ip(c, i));
}

void h_iret(Cpu& c, const Insn& i) {
  v86_iopl_check(c);
  iret(c, i.opsize, next_ip(c, i));
}

void h_jmp_far_ptr(Cpu& c, const Insn& i) {
  far_jmp(c, uint16_t(i.imm2), uint32_t(i.imm), i.opsize, next_ip(c, i));
}

void h_call_far_ptr(Cpu& c, const Insn& i) {
  far_call(c, uint16_t(i.imm2), uint32_t(i.imm), i.opsize, next_ip(c, i));
}

// FF /3, FF /5: m16:16 / m16:32 far pointer in memory (register form is #UD).
void read_far_pointer(Cpu& c, const Insn& i, uint16_t& sel, uint32_t& off) {
  if (!i.mem) throw fault(Vec::UD);
  uint64_t ea = sys::effective_address(c, i);
  if (i.opsize == 2) {
    off = c.read<uint16_t>(i.seg, ea);
    sel = c.read<uint16_t>(i.seg, (ea + 2) & sys::addr_mask(i.addrsize));
  } else {
    off = c.read<uint32_t>(i.seg, ea);
    sel = c.read<uint16_t>(i.seg, (ea + 4) & sys::addr_mask(i.addrsize));
  }
}

void h_call_far_mem(Cpu& c, const Insn& i) {
  uint16_t sel;
  uint32_t off;
  read_far_pointer(c, i, sel, off);
  far_call(c, sel, off, i.opsize, next_ip(c, i));
}

void h_jmp_far_mem(Cpu& c, const Insn& i) {
  uint16_t sel;
  uint32_t off;
  read_far_pointer(c, i, sel, off);
  far_jmp(c, sel, off, i.opsize, next_ip(c, i));
}

void h_ret_far_imm(Cpu& c, const Insn& i) { far_ret(c, i.opsize, uint16_t(i.imm)); }
void h_ret_far_sized(Cpu& c, const Insn& i) { far_ret(c, i.opsize, 0); }

void h_pushf(Cpu& c, const Insn& i) {
  v86_iopl_check(c);
  // The image has VM and RF clear (PUSHF operation).
  uint32_t v = c.eflags() & ~(fl::VM | fl::RF);
  StackAccess st = current_stack(c);
  st.push(v, i.opsize == 2 ? 2 : 4);
  st.commit_sp();
  advance(c, i);
}

void h_popf(Cpu& c, const Insn& i) {
  v86_iopl_check(c);
  StackAccess st = current_stack(c);
  unsigned sz = i.opsize == 2 ? 2 : 4;
  uint32_t v = st.pop(sz);
  // Which bits POPF may change (POPF operation): never VM, VIP, VIF; RF is cleared.
  uint32_t mask = fl::ARITH | fl::TF | fl::DF | fl::NT | fl::AC | fl::ID;
  if (!c.protected_mode()) {
    mask |= fl::IF | fl::IOPL;
  } else if (c.v86()) {
    mask |= fl::IF;  // IOPL == 3 here
  } else {
    if (c.cpl == 0) mask |= fl::IOPL;
    if (c.cpl <= c.iopl()) mask |= fl::IF;
  }
  if (sz == 2) mask &= 0xffff;
  st.commit_sp();
  uint32_t cur = c.eflags() & ~fl::RF;
  c.set_eflags((cur & ~mask) | (v & mask) | fl::FIXED1);
  advance(c, i);
}

bool if_change_allowed(const Cpu& c) {
  if (!c.protected_mode()) return true;
  if (c.v86()) return c.iopl() == 3;
  return c.cpl <= c.iopl();
}

void h_cli(Cpu& c, const Insn& i) {
  if (!if_change_allowed(c)) throw fault(Vec::GP, 0);
  c.eflags_rest &= ~fl::IF;
  advance(c, i);
}

void h_sti(Cpu& c, const Insn& i) {
  if (!if_change_allowed(c)) throw fault(Vec::GP, 0);
  // Interrupts stay blocked for one more instruction when STI sets IF (6.8.3).
  if (!(c.eflags_rest & fl::IF)) c.interrupt_shadow = 2;
  c.eflags_rest |= fl::IF;
  advance(c, i);
}

void h_hlt(Cpu& c, const Insn& i) {
  sys::require_cpl0(c);
  advance(c, i);
  c.halted = true;
  c.exit = cpu::VcpuExit{};
  c.exit.reason = cpu::ExitReason::Hlt;
  c.exit_pending = true;
}

}  // namespace

void register_system_flow(x86::DispatchTable& t) {
  using x86::OpKey;
  using x86::OpMap;
  auto one = [&](uint8_t op, x86::Handler h) { t.set(OpKey{OpMap::OneByte, op}, h); };
  one(0xcd, h_int);
  one(0xcc, h_int3);
  one(0xce, h_into);
  one(0xf1, h_icebp);
  one(0xcf, h_iret);
  one(0xea, h_jmp_far_ptr);
  one(0x9a, h_call_far_ptr);
  one(0xca, h_ret_far_imm);
  one(0xcb, h_ret_far_sized);
  one(0x9c, h_pushf);
  one(0x9d, h_popf);
  one(0xfa, h_cli);
  one(0xfb, h_sti);
  one(0xf4, h_hlt);
  t.set(OpKey{OpMap::OneByte, 0xff, 3}, h_call_far_mem);
  t.set(OpKey{OpMap::OneByte, 0xff, 5}, h_jmp_far_mem);
}

}  // namespace anykvm::soft
