// Segment-register loads (SDM vol. 3, 3.4.3 and the MOV/POP Sreg operation in
// vol. 2): real and virtual-8086 loads (base = selector << 4), protected-mode
// loads from the GDT/LDT with the null, limit, type, privilege and presence
// checks, setting the descriptor's accessed bit. CS loads for far transfers
// live in events/far.cpp; load_segment(CS) here only covers same-privilege loads.
// Leaves out: 64-bit mode null-SS rules.
#include "cpu/soft/mmu/descriptor.h"

namespace anykvm::soft {

bool read_descriptor(Cpu& c, uint16_t sel, Descriptor& d, uint64_t* addr) {
  uint64_t base;
  uint32_t limit;
  if (sel & 4) {
    if (c.ldtr.unusable || !c.ldtr.present) return false;
    base = c.ldtr.base;
    limit = c.ldtr.limit;
  } else {
    base = c.gdtr.base;
    limit = c.gdtr.limit;
  }
  uint32_t off = sel & 0xfff8;
  if (uint64_t(off) + 7 > limit) return false;
  uint64_t a = base + off;
  if (!c.long_mode()) a = uint32_t(a);
  // Descriptor-table reads are implicit supervisor accesses (SDM 4.6.1).
  d.raw = c.read_linear<uint64_t>(a, false);
  if (addr) *addr = a;
  return true;
}

void set_descriptor_accessed(Cpu& c, uint64_t addr, Descriptor& d) {
  if (d.raw & (uint64_t(1) << 40)) return;
  d.raw |= uint64_t(1) << 40;
  c.write_linear<uint8_t>(addr + 5, uint8_t(d.raw >> 40), false);
}

void write_descriptor_type(Cpu& c, uint64_t addr, Descriptor& d, uint8_t type) {
  d.raw = (d.raw & ~(uint64_t(0xf) << 40)) | (uint64_t(type & 0xf) << 40);
  c.write_linear<uint8_t>(addr + 5, uint8_t(d.raw >> 40), false);
}

Segment check_data_segment(Cpu& c, uint8_t seg_index, uint16_t sel, uint8_t cpl, Vec vec_gp) {
  const uint32_t ec = sel_error(sel);
  const uint8_t rpl = sel & 3;
  if (selector_null(sel)) {
    if (seg_index == sreg::SS) throw fault(vec_gp, 0);
    return null_segment(sel);
  }
  Descriptor d;
  uint64_t addr;
  if (!read_descriptor(c, sel, d, &addr)) throw fault(vec_gp, ec);
  if (seg_index == sreg::SS) {
    if (rpl != cpl || !d.writable() || d.dpl() != cpl) throw fault(vec_gp, ec);
    if (!d.present()) throw fault(vec_gp == Vec::TS ? Vec::TS : Vec::SS, ec);
  } else {
    if (!d.s() || !d.readable()) throw fault(vec_gp, ec);
    if (!d.conforming() && (rpl > d.dpl() || cpl > d.dpl())) throw fault(vec_gp, ec);
    if (!d.present()) throw fault(vec_gp == Vec::TS ? Vec::TS : Vec::NP, ec);
  }
  set_descriptor_accessed(c, addr, d);
  return d.to_segment(sel);
}

void Cpu::load_segment_real(uint8_t s, uint16_t sel) {
  Segment& sg = seg[s];
  sg.selector = sel;
  sg.base = uint64_t(sel) << 4;
  sg.unusable = 0;
  if (v86()) {
    // Virtual-8086 segments are always 64 KiB read/write data at DPL 3 (SDM 20.1.1).
    sg.limit = 0xffff;
    sg.type = 3;
    sg.s = 1;
    sg.present = 1;
    sg.dpl = 3;
    sg.db = sg.g = sg.l = sg.avl = 0;
  } else {
    sg.present = 1;
  }
}

void Cpu::load_segment(uint8_t s, uint16_t sel) {
  if (!protected_mode() || v86()) {
    load_segment_real(s, sel);
    return;
  }
  if (s != sreg::CS) {
    seg[s] = check_data_segment(*this, s, sel, cpl, Vec::GP);
    return;
  }
  // Same-privilege code-segment load (direct far JMP rules, SDM vol. 2 JMP).
  const uint32_t ec = sel_error(sel);
  if (selector_null(sel)) throw fault(Vec::GP, 0);
  Descriptor d;
  uint64_t addr;
  if (!read_descriptor(*this, sel, d, &addr) || !d.is_code()) throw fault(Vec::GP, ec);
  if (d.conforming() ? d.dpl() > cpl : ((sel & 3) > cpl || d.dpl() != cpl)) throw fault(Vec::GP, ec);
  if (!d.present()) throw fault(Vec::NP, ec);
  set_descriptor_accessed(*this, addr, d);
  seg[sreg::CS] = d.to_segment(uint16_t((sel & 0xfffc) | cpl));
}

}  // namespace anykvm::soft
