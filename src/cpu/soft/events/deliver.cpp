// Exception and interrupt delivery (SDM vol. 3, ch. 6; vol. 2 "INT n"
// operation): real-mode IVT, protected-mode IDT interrupt/trap/task gates with
// privilege change and a TSS stack switch, from virtual-8086 mode too; error
// codes with the EXT bit (6.13); double-fault classes and triple fault (6.15);
// NMI blocking until IRET (6.7.1); CR2 written when a #PF is delivered.
// Leaves out: 64-bit IDT gates and IST, VME/PVI virtual interrupts.
#include "cpu/soft/events/events.h"

namespace anykvm::soft {
namespace {

constexpr uint8_t k_vec_df = uint8_t(Vec::DF), k_vec_pf = uint8_t(Vec::PF);

// 6.15 table 6-4: contributory exceptions.
bool contributory(uint8_t v) {
  return v == uint8_t(Vec::DE) || (v >= uint8_t(Vec::TS) && v <= uint8_t(Vec::GP));
}

// Fault-class exceptions push EFLAGS with RF = 1 (6.12.1, 17.3.1.1) so the
// restarted instruction does not re-trigger an instruction breakpoint.
bool fault_class(uint8_t v) {
  switch (Vec(v)) {
    case Vec::DE: case Vec::BR: case Vec::UD: case Vec::NM: case Vec::TS: case Vec::NP:
    case Vec::SS: case Vec::GP: case Vec::PF: case Vec::MF: case Vec::AC: case Vec::XM:
      return true;
    default:
      return false;
  }
}

void deliver_real(Cpu& c, uint8_t vector, uint64_t return_ip) {
  uint32_t off = uint32_t(vector) * 4;
  if (off + 3 > c.idtr.limit) throw fault(Vec::GP, 0);
  uint32_t entry = c.read_linear<uint32_t>(uint32_t(c.idtr.base + off), false);
  StackAccess st = current_stack(c);
  st.push(c.eflags() & 0xffff, 2);
  st.push(c.seg[sreg::CS].selector, 2);
  st.push(uint32_t(return_ip), 2);
  st.commit_sp();
  c.eflags_rest &= ~(fl::IF | fl::TF | fl::AC | fl::RF);
  c.load_segment_real(sreg::CS, uint16_t(entry >> 16));
  c.rip = entry & 0xffff;
}

void deliver_protected(Cpu& c, uint8_t vector, EventKind kind, bool has_ec, uint32_t ec, uint64_t return_ip) {
  const uint32_t ext = kind == EventKind::SoftInt ? 0 : 1;
  const uint32_t idt_ec = uint32_t(vector) * 8 + 2 + ext;
  if (uint32_t(vector) * 8 + 7 > c.idtr.limit) throw fault(Vec::GP, idt_ec);
  Descriptor gate{c.read_linear<uint64_t>(uint32_t(c.idtr.base + uint32_t(vector) * 8), false)};
  SysType gt = gate.sys_type();
  bool valid = !gate.s() && (gt == SysType::TaskGate || gt == SysType::IntGate16 || gt == SysType::TrapGate16 ||
                             gt == SysType::IntGate32 || gt == SysType::TrapGate32);
  if (!valid) throw fault(Vec::GP, idt_ec);
  // Only INT n / INT3 / INTO check the gate's DPL (6.12.1.1).
  if (kind == EventKind::SoftInt && gate.dpl() < c.cpl) throw fault(Vec::GP, idt_ec);
  if (!gate.present()) throw fault(Vec::NP, idt_ec);

  uint32_t pushed_flags = c.eflags();
  if (kind == EventKind::Exception && fault_class(vector)) pushed_flags |= fl::RF;

  if (gt == SysType::TaskGate) {
    uint16_t tss_sel = gate.gate_selector();
    Descriptor d;
    uint64_t daddr;
    if ((tss_sel & 4) || !read_descriptor(c, tss_sel, d, &daddr)) throw fault(Vec::GP, sel_error(tss_sel) + ext);
    if (d.s() || (d.sys_type() != SysType::Tss16Avail && d.sys_type() != SysType::Tss32Avail))
      throw fault(Vec::GP, sel_error(tss_sel) + ext);
    task_switch(c, tss_sel, d, daddr, TaskSwitchReason::Int, return_ip, has_ec, ec);
    return;
  }

  const bool gate32 = gt == SysType::IntGate32 || gt == SysType::TrapGate32;
  const bool int_gate = gt == SysType::IntGate32 || gt == SysType::IntGate16;
  const unsigned sz = gate32 ? 4 : 2;
  uint16_t sel = gate.gate_selector();
  uint32_t offset = gate32 ? gate.gate_offset() : (gate.gate_offset() & 0xffff);
  if (selector_null(sel)) throw fault(Vec::GP, ext);
  Descriptor d;
  uint64_t daddr;
  if (!read_descriptor(c, sel, d, &daddr)) throw fault(Vec::GP, sel_error(sel) + ext);
  if (!d.is_code() || d.dpl() > c.cpl) throw fault(Vec::GP, sel_error(sel) + ext);
  if (!d.present()) throw fault(Vec::NP, sel_error(sel) + ext);
  if (offset > d.limit()) throw fault(Vec::GP, ext);

  const bool v86 = c.v86();
  uint8_t new_cpl;
  if (!d.conforming() && d.dpl() < c.cpl) {
    // Inter-privilege: switch to the TSS stack of the handler's ring (6.12.1).
    if (v86 && d.dpl() != 0) throw fault(Vec::GP, sel_error(sel) + ext);
    new_cpl = d.dpl();
    StackAccess st = inner_stack(c, new_cpl, ext);
    if (v86) {
      st.push(c.seg[sreg::GS].selector, sz);
      st.push(c.seg[sreg::FS].selector, sz);
      st.push(c.seg[sreg::DS].selector, sz);
      st.push(c.seg[sreg::ES].selector, sz);
    }
    st.push(c.seg[sreg::SS].selector, sz);
    st.push(uint32_t(c.gpr[4]), sz);
    st.push(pushed_flags, sz);
    st.push(c.seg[sreg::CS].selector, sz);
    st.push(uint32_t(return_ip), sz);
    if (has_ec) st.push(ec, sz);
    // Commit.
    set_descriptor_accessed(c, daddr, d);
    if (v86) {
      for (uint8_t s : {sreg::ES, sreg::DS, sreg::FS, sreg::GS}) c.seg[s] = null_segment(0);
    }
    c.seg[sreg::SS] = st.ss;
    st.commit_sp();
  } else if (d.conforming() || d.dpl() == c.cpl) {
    if (v86) throw fault(Vec::GP, sel_error(sel) + ext);
    new_cpl = c.cpl;
    StackAccess st = current_stack(c);
    st.push(pushed_flags, sz);
    st.push(c.seg[sreg::CS].selector, sz);
    st.push(uint32_t(return_ip), sz);
    if (has_ec) st.push(ec, sz);
    set_descriptor_accessed(c, daddr, d);
    st.commit_sp();
  } else {
    throw fault(Vec::GP, sel_error(sel) + ext);
  }
  commit_cs(c, d, sel, new_cpl);
  c.rip = offset;
  c.eflags_rest &= ~(fl::TF | fl::NT | fl::VM | fl::RF | (int_gate ? fl::IF : 0));
}

}  // namespace

void deliver_event(Cpu& c, uint8_t vector, EventKind kind, bool has_ec, uint32_t ec, uint64_t return_ip) {
  if (kind == EventKind::Exception && vector == k_vec_pf) c.cr2 = c.tlb.pf_addr;
  if (!c.protected_mode()) deliver_real(c, vector, return_ip);
  else deliver_protected(c, vector, kind, has_ec, ec, return_ip);
  // Delivered: the CPU leaves HLT, the shadow ends, an NMI blocks further NMIs.
  c.halted = false;
  c.mp_state = cpu::MpState::Runnable;
  c.interrupt_shadow = 0;
  if (kind == EventKind::Nmi) c.nmi_masked = true;
}

void deliver_with_escalation(Cpu& c, uint8_t vector, EventKind kind, bool has_ec, uint32_t ec,
                             uint64_t return_ip) {
  for (;;) {
    try {
      deliver_event(c, vector, kind, has_ec, ec, return_ip);
      return;
    } catch (const StopInsn&) {
      // The IDT, a descriptor, the TSS or the stack frame is not RAM. KVM
      // cannot finish such a delivery either: KVM_EXIT_INTERNAL_ERROR with
      // suberror DELIVERY_EV and the IDT-vectoring information (vmx.c,
      // __vmx_handle_exit). Without this the MMIO stop escaped the engine loop
      // (it is thrown from inside its Fault handler) and KVM_RUN said EFAULT.
      c.mmio_log.reset();
      const uint32_t type = kind == EventKind::Exception ? 3 : kind == EventKind::Nmi ? 2
                            : kind == EventKind::External ? 0 : kind == EventKind::Icebp ? 5 : 4;
      c.exit = cpu::VcpuExit{};
      c.exit.reason = cpu::ExitReason::InternalError;
      c.exit.internal.suberror = cpu::InternalSuberror::DeliveryEv;
      c.exit.internal.ndata = 1;
      c.exit.internal.data[0] = 0x80000000u | (has_ec ? 0x800u : 0) | (type << 8) | vector;
      c.exit_pending = true;
      return;
    } catch (const Fault& f) {
      uint8_t second = uint8_t(f.vector);
      bool first_is_exc = kind == EventKind::Exception;
      if (first_is_exc && vector == k_vec_df) {
        // A fault while delivering #DF: shutdown (6.15, interrupt 8).
        c.exit = cpu::VcpuExit{};
        c.exit.reason = cpu::ExitReason::Shutdown;
        c.exit_pending = true;
        return;
      }
      bool df = first_is_exc && ((contributory(vector) && contributory(second)) ||
                                 (vector == k_vec_pf && (contributory(second) || second == k_vec_pf)));
      if (df) {
        vector = k_vec_df;
        has_ec = true;
        ec = 0;
      } else {
        vector = second;
        has_ec = f.has_error_code;
        ec = f.error_code;
      }
      kind = EventKind::Exception;
      return_ip = c.rip;  // nothing was committed: the faulting instruction
    }
  }
}

void Cpu::deliver_exception(const Fault& f) {
  deliver_with_escalation(*this, uint8_t(f.vector), EventKind::Exception, f.has_error_code, f.error_code, rip);
}

void Cpu::deliver_interrupt(uint8_t vector, bool software, uint64_t next_rip) {
  deliver_with_escalation(*this, vector, software ? EventKind::SoftInt : EventKind::External, false, 0, next_rip);
}

void Cpu::deliver_nmi() {
  nmi_pending = false;
  deliver_with_escalation(*this, uint8_t(Vec::NMI), EventKind::Nmi, false, 0, rip);
}

}  // namespace anykvm::soft
