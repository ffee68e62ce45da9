// Far control transfers (SDM vol. 2 JMP/CALL/RET/IRET operation; vol. 3,
// 5.8 privilege checks for control transfers, 5.8.5 call gates with stack
// switch and parameter copy, 7.3 task gates and TSS targets, 20.1/20.3 return
// to virtual-8086 mode). Real and v86 forms load CS as base = selector << 4.
// Memory accesses (stack reads/writes, descriptor reads) all happen before any
// register is committed, so a fault or MMIO stop leaves the old state.
// Leaves out: 64-bit call gates and far returns to 64-bit code.
#include "cpu/soft/events/events.h"

namespace anykvm::soft {
namespace {

constexpr uint32_t k_flags_modifiable = fl::ARITH | fl::TF | fl::IF | fl::DF | fl::IOPL | fl::NT | fl::RF |
                                        fl::AC | fl::VIF | fl::VIP | fl::ID;

uint32_t truncate_ip(uint32_t off, uint8_t opsize) { return opsize == 2 ? (off & 0xffff) : off; }

// Checks shared by every protected-mode code-segment target reached without a
// gate (direct JMP/CALL): 5.8.1.
Descriptor direct_code_target(Cpu& c, uint16_t sel, uint64_t* addr) {
  Descriptor d;
  const uint32_t ec = sel_error(sel);
  if (!read_descriptor(c, sel, d, addr)) throw fault(Vec::GP, ec);
  if (!d.is_code()) throw fault(Vec::GP, ec);
  if (d.conforming() ? d.dpl() > c.cpl : ((sel & 3) > c.cpl || d.dpl() != c.cpl)) throw fault(Vec::GP, ec);
  if (!d.present()) throw fault(Vec::NP, ec);
  return d;
}

// The code segment a call gate names (5.8.4): null, type, DPL <= CPL, present.
Descriptor gate_code_target(Cpu& c, uint16_t tsel, uint64_t* addr) {
  if (selector_null(tsel)) throw fault(Vec::GP, 0);
  Descriptor t;
  if (!read_descriptor(c, tsel, t, addr)) throw fault(Vec::GP, sel_error(tsel));
  if (!t.is_code() || t.dpl() > c.cpl) throw fault(Vec::GP, sel_error(tsel));
  if (!t.present()) throw fault(Vec::NP, sel_error(tsel));
  return t;
}

// A task gate or TSS named by JMP/CALL: DPL/RPL checks then the switch.
void far_to_task(Cpu& c, uint16_t sel, const Descriptor& d, uint64_t daddr, bool call, uint64_t next_eip) {
  const uint32_t ec = sel_error(sel);
  if (d.dpl() < c.cpl || (sel & 3) > d.dpl()) throw fault(Vec::GP, ec);
  TaskSwitchReason why = call ? TaskSwitchReason::Call : TaskSwitchReason::Jmp;
  if (d.sys_type() == SysType::TaskGate) {
    if (!d.present()) throw fault(Vec::NP, ec);
    uint16_t tss_sel = d.gate_selector();
    Descriptor t;
    uint64_t taddr;
    if ((tss_sel & 4) || !read_descriptor(c, tss_sel, t, &taddr)) throw fault(Vec::GP, sel_error(tss_sel));
    if (t.s() || (t.sys_type() != SysType::Tss16Avail && t.sys_type() != SysType::Tss32Avail))
      throw fault(Vec::GP, sel_error(tss_sel));
    task_switch(c, tss_sel, t, taddr, why, next_eip);
  } else {
    if (sel & 4) throw fault(Vec::GP, ec);  // TSS descriptors live in the GDT
    task_switch(c, sel, d, daddr, why, next_eip);
  }
}

void far_protected(Cpu& c, uint16_t sel, uint32_t offset, uint8_t opsize, bool call, uint64_t next_eip) {
  if (selector_null(sel)) throw fault(Vec::GP, 0);
  const uint32_t ec = sel_error(sel);
  Descriptor d;
  uint64_t daddr;
  if (!read_descriptor(c, sel, d, &daddr)) throw fault(Vec::GP, ec);
  if (d.s()) {
    d = direct_code_target(c, sel, &daddr);
    uint32_t eip = truncate_ip(offset, opsize);
    if (eip > d.limit()) throw fault(Vec::GP, 0);
    if (call) {
      StackAccess st = current_stack(c);
      st.push(c.seg[sreg::CS].selector, opsize);
      st.push(uint32_t(next_eip), opsize);
      set_descriptor_accessed(c, daddr, d);
      st.commit_sp();
    } else {
      set_descriptor_accessed(c, daddr, d);
    }
    commit_cs(c, d, sel, c.cpl);
    c.rip = eip;
    return;
  }
  switch (d.sys_type()) {
    case SysType::TaskGate:
    case SysType::Tss16Avail:
    case SysType::Tss32Avail:
      far_to_task(c, sel, d, daddr, call, next_eip);
      return;
    case SysType::CallGate16:
    case SysType::CallGate32:
      break;
    default:
      throw fault(Vec::GP, ec);
  }
  // Call gate (5.8.4).
  if (d.dpl() < c.cpl || (sel & 3) > d.dpl()) throw fault(Vec::GP, ec);
  if (!d.present()) throw fault(Vec::NP, ec);
  const bool gate32 = d.sys_type() == SysType::CallGate32;
  const unsigned sz = gate32 ? 4 : 2;
  uint16_t tsel = d.gate_selector();
  uint64_t taddr;
  Descriptor t = gate_code_target(c, tsel, &taddr);
  uint32_t eip = gate32 ? d.gate_offset() : (d.gate_offset() & 0xffff);
  if (!call) {
    if (t.conforming() ? t.dpl() > c.cpl : t.dpl() != c.cpl) throw fault(Vec::GP, sel_error(tsel));
    if (eip > t.limit()) throw fault(Vec::GP, 0);
    set_descriptor_accessed(c, taddr, t);
    commit_cs(c, t, tsel, c.cpl);
    c.rip = eip;
    return;
  }
  if (eip > t.limit()) throw fault(Vec::GP, 0);
  if (!t.conforming() && t.dpl() < c.cpl) {
    // More privilege: new stack from the TSS, copy the parameters (5.8.5, figure 5-13).
    uint8_t new_cpl = t.dpl();
    StackAccess ns = inner_stack(c, new_cpl, 0);
    StackAccess old = current_stack(c);
    uint32_t params[32];
    unsigned count = d.gate_params();
    for (unsigned i = 0; i < count; ++i) {
      uint64_t off = (old.sp + i * sz) & old.sp_mask();
      uint64_t lin = old.check(off, sz);
      params[i] = sz == 4 ? c.read_linear<uint32_t>(lin, old.user) : c.read_linear<uint16_t>(lin, old.user);
    }
    ns.push(c.seg[sreg::SS].selector, sz);
    ns.push(uint32_t(c.gpr[4]), sz);
    for (unsigned i = count; i-- > 0;) ns.push(params[i], sz);
    ns.push(c.seg[sreg::CS].selector, sz);
    ns.push(uint32_t(next_eip), sz);
    set_descriptor_accessed(c, taddr, t);
    c.seg[sreg::SS] = ns.ss;
    ns.commit_sp();
    commit_cs(c, t, tsel, new_cpl);
  } else {
    StackAccess st = current_stack(c);
    st.push(c.seg[sreg::CS].selector, sz);
    st.push(uint32_t(next_eip), sz);
    set_descriptor_accessed(c, taddr, t);
    st.commit_sp();
    commit_cs(c, t, tsel, c.cpl);
  }
  c.rip = eip;
}

// The code segment a far RET/IRET returns to (RET operation): RPL >= CPL,
// conforming DPL <= RPL, non-conforming DPL == RPL, present.
Descriptor return_code_target(Cpu& c, uint16_t sel, uint64_t* addr) {
  if (selector_null(sel)) throw fault(Vec::GP, 0);
  const uint32_t ec = sel_error(sel);
  Descriptor d;
  if (!read_descriptor(c, sel, d, addr) || !d.is_code()) throw fault(Vec::GP, ec);
  uint8_t rpl = sel & 3;
  if (rpl < c.cpl) throw fault(Vec::GP, ec);
  if (d.conforming() ? d.dpl() > rpl : d.dpl() != rpl) throw fault(Vec::GP, ec);
  if (!d.present()) throw fault(Vec::NP, ec);
  return d;
}

// The stack segment of a return to an outer level.
Segment return_stack_segment(Cpu& c, uint16_t ss_sel, uint8_t rpl) {
  if (selector_null(ss_sel)) throw fault(Vec::GP, 0);
  const uint32_t ec = sel_error(ss_sel);
  Descriptor d;
  uint64_t addr;
  if (!read_descriptor(c, ss_sel, d, &addr)) throw fault(Vec::GP, ec);
  if ((ss_sel & 3) != rpl || !d.writable() || d.dpl() != rpl) throw fault(Vec::GP, ec);
  if (!d.present()) throw fault(Vec::SS, ec);
  set_descriptor_accessed(c, addr, d);
  return d.to_segment(ss_sel);
}

void write_flags(Cpu& c, uint32_t value, uint32_t mask) {
  c.set_eflags((c.eflags() & ~mask) | (value & mask) | fl::FIXED1);
}

}  // namespace

void commit_cs(Cpu& c, const Descriptor& d, uint16_t sel, uint8_t new_cpl) {
  c.seg[sreg::CS] = d.to_segment(uint16_t((sel & 0xfffc) | new_cpl));
  c.cpl = new_cpl;
}

void null_inaccessible_segments(Cpu& c) {
  for (uint8_t s : {sreg::ES, sreg::DS, sreg::FS, sreg::GS}) {
    Segment& sg = c.seg[s];
    if (sg.unusable) continue;
    bool data_or_nc_code = !(sg.type & segtype::Code) || !(sg.type & segtype::Conforming);
    if (data_or_nc_code && sg.dpl < c.cpl) sg = null_segment(0);
  }
}

StackAccess inner_stack(Cpu& c, uint8_t dpl, uint32_t ext) {
  const uint32_t tr_ec = sel_error(c.tr.selector) + ext;
  const bool is32 = c.tr.type & 8;
  uint32_t esp;
  uint16_t ss;
  if (is32) {
    uint32_t off = 4 + dpl * 8;
    if (off + 5 > c.tr.limit) throw fault(Vec::TS, tr_ec);
    esp = c.read_linear<uint32_t>(uint32_t(c.tr.base + off), false);
    ss = c.read_linear<uint16_t>(uint32_t(c.tr.base + off + 4), false);
  } else {
    uint32_t off = 2 + dpl * 4;
    if (off + 3 > c.tr.limit) throw fault(Vec::TS, tr_ec);
    esp = c.read_linear<uint16_t>(uint32_t(c.tr.base + off), false);
    ss = c.read_linear<uint16_t>(uint32_t(c.tr.base + off + 2), false);
  }
  if (selector_null(ss)) throw fault(Vec::TS, ext);
  const uint32_t ss_ec = sel_error(ss) + ext;
  Descriptor d;
  uint64_t addr;
  if (!read_descriptor(c, ss, d, &addr)) throw fault(Vec::TS, ss_ec);
  if ((ss & 3) != dpl || d.dpl() != dpl || !d.writable()) throw fault(Vec::TS, ss_ec);
  if (!d.present()) throw fault(Vec::SS, ss_ec);
  set_descriptor_accessed(c, addr, d);
  return StackAccess{c, d.to_segment(ss), esp, dpl == 3, ss_ec};
}

void far_jmp(Cpu& c, uint16_t sel, uint32_t offset, uint8_t opsize, uint64_t next_eip) {
  if (!c.protected_mode() || c.v86()) {
    uint32_t eip = truncate_ip(offset, opsize);
    if (eip > c.seg[sreg::CS].limit) throw fault(Vec::GP, 0);
    c.load_segment_real(sreg::CS, sel);
    c.rip = eip;
    return;
  }
  far_protected(c, sel, offset, opsize, false, next_eip);
}

void far_call(Cpu& c, uint16_t sel, uint32_t offset, uint8_t opsize, uint64_t next_eip) {
  if (!c.protected_mode() || c.v86()) {
    uint32_t eip = truncate_ip(offset, opsize);
    StackAccess st = current_stack(c);
    st.push(c.seg[sreg::CS].selector, opsize);
    st.push(uint32_t(next_eip), opsize);
    if (eip > c.seg[sreg::CS].limit) throw fault(Vec::GP, 0);
    st.commit_sp();
    c.load_segment_real(sreg::CS, sel);
    c.rip = eip;
    return;
  }
  far_protected(c, sel, offset, opsize, true, next_eip);
}

void far_ret(Cpu& c, uint8_t opsize, uint16_t pop_bytes) {
  StackAccess st = current_stack(c);
  uint32_t eip = truncate_ip(st.pop(opsize), opsize);
  uint16_t sel = uint16_t(st.pop(opsize));
  auto release = [&](StackAccess& s) { s.sp = (s.sp & ~s.sp_mask()) | ((s.sp + pop_bytes) & s.sp_mask()); };
  if (!c.protected_mode() || c.v86()) {
    if (eip > c.seg[sreg::CS].limit) throw fault(Vec::GP, 0);
    release(st);
    st.commit_sp();
    c.load_segment_real(sreg::CS, sel);
    c.rip = eip;
    return;
  }
  uint64_t addr;
  Descriptor d = return_code_target(c, sel, &addr);
  uint8_t rpl = sel & 3;
  if (rpl > c.cpl) {
    release(st);
    uint32_t new_esp = st.pop(opsize);
    uint16_t ss_sel = uint16_t(st.pop(opsize));
    Segment ss = return_stack_segment(c, ss_sel, rpl);
    if (eip > d.limit()) throw fault(Vec::GP, 0);
    set_descriptor_accessed(c, addr, d);
    commit_cs(c, d, sel, rpl);
    c.seg[sreg::SS] = ss;
    StackAccess ns{c, ss, new_esp, rpl == 3, 0};
    release(ns);
    ns.commit_sp();
    null_inaccessible_segments(c);
  } else {
    if (eip > d.limit()) throw fault(Vec::GP, 0);
    release(st);
    set_descriptor_accessed(c, addr, d);
    st.commit_sp();
    commit_cs(c, d, sel, c.cpl);
  }
  c.rip = eip;
}

void iret(Cpu& c, uint8_t opsize, uint64_t next_eip) {
  const uint32_t size_mask = opsize == 2 ? 0xffffu : 0xffffffffu;
  if (!c.protected_mode() || c.v86()) {
    // Real mode, or v86 with IOPL 3 (the IOPL < 3 #GP is the handler's).
    StackAccess st = current_stack(c);
    uint32_t eip = truncate_ip(st.pop(opsize), opsize);
    uint16_t sel = uint16_t(st.pop(opsize));
    uint32_t flags = st.pop(opsize);
    if (eip > c.seg[sreg::CS].limit) throw fault(Vec::GP, 0);
    uint32_t mask = k_flags_modifiable & size_mask;
    // Real mode keeps VM/VIF/VIP; v86 also keeps IOPL (IRET operation).
    mask &= c.v86() ? ~(fl::VM | fl::VIF | fl::VIP | fl::IOPL) : ~(fl::VM | fl::VIF | fl::VIP);
    st.commit_sp();
    write_flags(c, flags, mask);
    c.load_segment_real(sreg::CS, sel);
    c.rip = eip;
    c.nmi_masked = false;
    return;
  }
  if (c.eflags_rest & fl::NT) {
    // Return from a nested task through the previous-task link (7.4).
    uint16_t link = c.read_linear<uint16_t>(uint32_t(c.tr.base), false);
    Descriptor d;
    uint64_t daddr;
    if ((link & 4) || !read_descriptor(c, link, d, &daddr)) throw fault(Vec::TS, sel_error(link));
    if (d.s() || (d.sys_type() != SysType::Tss16Busy && d.sys_type() != SysType::Tss32Busy))
      throw fault(Vec::TS, sel_error(link));
    task_switch(c, link, d, daddr, TaskSwitchReason::Iret, next_eip);
    c.nmi_masked = false;
    return;
  }
  StackAccess st = current_stack(c);
  uint32_t eip = truncate_ip(st.pop(opsize), opsize);
  uint16_t sel = uint16_t(st.pop(opsize));
  uint32_t flags = st.pop(opsize);
  const uint8_t old_cpl = c.cpl;
  if (opsize == 4 && (flags & fl::VM) && old_cpl == 0) {
    // Return to virtual-8086 mode (20.3.2): the frame also holds ESP, SS, ES, DS, FS, GS.
    uint32_t esp = st.pop(4);
    uint16_t ss = uint16_t(st.pop(4));
    uint16_t es = uint16_t(st.pop(4)), ds = uint16_t(st.pop(4));
    uint16_t fs = uint16_t(st.pop(4)), gs = uint16_t(st.pop(4));
    c.set_eflags((flags & k_flags_modifiable) | fl::VM | fl::FIXED1);
    c.cpl = 3;
    c.load_segment_real(sreg::CS, sel);
    c.load_segment_real(sreg::SS, ss);
    c.load_segment_real(sreg::ES, es);
    c.load_segment_real(sreg::DS, ds);
    c.load_segment_real(sreg::FS, fs);
    c.load_segment_real(sreg::GS, gs);
    c.gpr[4] = esp;
    c.rip = eip & 0xffff;
    c.nmi_masked = false;
    return;
  }
  uint64_t addr;
  Descriptor d = return_code_target(c, sel, &addr);
  uint8_t rpl = sel & 3;
  // Flags IRET may change depend on the CPL it executes at (IRET operation).
  uint32_t mask = fl::ARITH | fl::TF | fl::DF | fl::NT | fl::RF | fl::AC | fl::ID;
  if (old_cpl <= c.iopl()) mask |= fl::IF;
  if (old_cpl == 0) mask |= fl::IOPL | fl::VIF | fl::VIP;
  mask &= size_mask;
  if (rpl > old_cpl) {
    uint32_t new_esp = st.pop(opsize);
    uint16_t ss_sel = uint16_t(st.pop(opsize));
    Segment ss = return_stack_segment(c, ss_sel, rpl);
    if (eip > d.limit()) throw fault(Vec::GP, 0);
    set_descriptor_accessed(c, addr, d);
    write_flags(c, flags, mask);
    commit_cs(c, d, sel, rpl);
    c.seg[sreg::SS] = ss;
    StackAccess ns{c, ss, new_esp, rpl == 3, 0};
    ns.commit_sp();
    null_inaccessible_segments(c);
  } else {
    if (eip > d.limit()) throw fault(Vec::GP, 0);
    set_descriptor_accessed(c, addr, d);
    st.commit_sp();
    write_flags(c, flags, mask);
    commit_cs(c, d, sel, old_cpl);
  }
  c.rip = eip;
  c.nmi_masked = false;
}

}  // namespace anykvm::soft
