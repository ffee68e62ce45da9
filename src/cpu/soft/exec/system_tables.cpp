// Descriptor-table and segment-inspection instructions (SDM vol. 2):
// LGDT/LIDT/SGDT/SIDT (0F 01 /0-/3), SMSW/LMSW (0F 01 /4, /6), INVLPG
// (0F 01 /7), SLDT/STR/LLDT/LTR/VERR/VERW (0F 00 /0-/5), LAR (0F 02),
// LSL (0F 03), CLTS (0F 06), ARPL (63). Leaves out: UMIP, 64-bit forms.
#include "cpu/soft/exec/system_handlers.h"
#include "cpu/soft/exec/system_util.h"
#include "cpu/soft/exec/system_cr.h"

namespace anykvm::soft {
namespace {

using namespace sys;

void set_zf(Cpu& c, bool z) {
  uint32_t f = c.eflags();
  c.set_eflags((f & ~fl::ZF) | (z ? fl::ZF : 0));
}

void h_lgdt_lidt(Cpu& c, const Insn& i, cpu::DescriptorTable& dt) {
  if (!i.mem) throw fault(Vec::UD);
  require_cpl0(c);
  uint64_t ea = effective_address(c, i);
  uint16_t limit = c.read<uint16_t>(i.seg, ea);
  uint32_t base = c.read<uint32_t>(i.seg, (ea + 2) & addr_mask(i.addrsize));
  if (i.opsize == 2) base &= 0xffffff;  // 24-bit base with a 16-bit operand
  dt.limit = limit;
  dt.base = base;
  advance(c, i);
}
void h_lgdt(Cpu& c, const Insn& i) { h_lgdt_lidt(c, i, c.gdtr); }
void h_lidt(Cpu& c, const Insn& i) { h_lgdt_lidt(c, i, c.idtr); }

void h_sgdt_sidt(Cpu& c, const Insn& i, const cpu::DescriptorTable& dt) {
  if (!i.mem) throw fault(Vec::UD);
  uint64_t ea = effective_address(c, i);
  c.check_write(i.seg, ea, 6);
  c.write<uint16_t>(i.seg, ea, dt.limit);
  c.write<uint32_t>(i.seg, (ea + 2) & addr_mask(i.addrsize), uint32_t(dt.base));
  advance(c, i);
}
void h_sgdt(Cpu& c, const Insn& i) { h_sgdt_sidt(c, i, c.gdtr); }
void h_sidt(Cpu& c, const Insn& i) { h_sgdt_sidt(c, i, c.idtr); }

// Stores a selector (SLDT/STR) or MSW: memory is always 16 bits; a register
// destination with a 32-bit operand is zero-extended (P6 and later).
void store_rm16(Cpu& c, const Insn& i, uint64_t v) {
  if (i.mem) {
    c.write<uint16_t>(i.seg, effective_address(c, i), uint16_t(v));
  } else if (i.opsize == 2) {
    c.set_reg<uint16_t>(i.rm, uint16_t(v));
  } else {
    c.set_reg<uint32_t>(i.rm, uint32_t(v));
  }
}

void h_sldt(Cpu& c, const Insn& i) {
  require_protected(c);
  store_rm16(c, i, c.ldtr.selector);
  advance(c, i);
}

void h_str(Cpu& c, const Insn& i) {
  require_protected(c);
  store_rm16(c, i, c.tr.selector);
  advance(c, i);
}

void h_lldt(Cpu& c, const Insn& i) {
  require_protected(c);
  require_cpl0(c);
  uint16_t sel = read_rm16(c, i);
  if (selector_null(sel)) {
    c.ldtr = null_segment(sel);
    advance(c, i);
    return;
  }
  Descriptor d;
  if ((sel & 4) || !read_descriptor(c, sel, d) || d.s() || d.sys_type() != SysType::Ldt)
    throw fault(Vec::GP, sel_error(sel));
  if (!d.present()) throw fault(Vec::NP, sel_error(sel));
  c.ldtr = d.to_segment(sel);
  advance(c, i);
}

void h_ltr(Cpu& c, const Insn& i) {
  require_protected(c);
  require_cpl0(c);
  uint16_t sel = read_rm16(c, i);
  if (selector_null(sel)) throw fault(Vec::GP, 0);
  Descriptor d;
  uint64_t addr;
  if ((sel & 4) || !read_descriptor(c, sel, d, &addr) || d.s() ||
      (d.sys_type() != SysType::Tss16Avail && d.sys_type() != SysType::Tss32Avail))
    throw fault(Vec::GP, sel_error(sel));
  if (!d.present()) throw fault(Vec::NP, sel_error(sel));
  write_descriptor_type(c, addr, d, d.type() | k_tss_busy_bit);
  c.tr = d.to_segment(sel);
  advance(c, i);
}

// Privilege test shared by LAR/LSL/VERR/VERW: conforming code segments are
// visible at every level, everything else needs DPL >= max(CPL, RPL).
bool visible(const Cpu& c, const Descriptor& d, uint16_t sel) {
  if (d.conforming()) return true;
  return d.dpl() >= c.cpl && d.dpl() >= (sel & 3);
}

bool lar_lsl_type_ok(const Descriptor& d, bool lar) {
  if (d.s()) return true;
  switch (d.sys_type()) {
    case SysType::Tss16Avail: case SysType::Ldt: case SysType::Tss16Busy:
    case SysType::Tss32Avail: case SysType::Tss32Busy:
      return true;
    case SysType::CallGate16: case SysType::TaskGate: case SysType::CallGate32:
      return lar;  // gates have access rights but no limit
    default:
      return false;
  }
}

void h_lar_lsl(Cpu& c, const Insn& i, bool lar) {
  require_protected(c);
  uint16_t sel = read_rm16(c, i);
  Descriptor d;
  bool ok = !selector_null(sel) && read_descriptor(c, sel, d) && lar_lsl_type_ok(d, lar) && visible(c, d, sel);
  if (ok) {
    uint32_t v = lar ? uint32_t(d.raw >> 32) & 0x00f0ff00u : d.limit();
    if (i.opsize == 2) c.set_reg<uint16_t>(i.reg, uint16_t(v));
    else c.set_reg<uint32_t>(i.reg, v);
  }
  set_zf(c, ok);
  advance(c, i);
}
void h_lar(Cpu& c, const Insn& i) { h_lar_lsl(c, i, true); }
void h_lsl(Cpu& c, const Insn& i) { h_lar_lsl(c, i, false); }

void h_verr_verw(Cpu& c, const Insn& i, bool write) {
  require_protected(c);
  uint16_t sel = read_rm16(c, i);
  Descriptor d;
  bool ok = !selector_null(sel) && read_descriptor(c, sel, d) && d.s() && visible(c, d, sel) &&
            (write ? d.writable() : d.readable());
  set_zf(c, ok);
  advance(c, i);
}
void h_verr(Cpu& c, const Insn& i) { h_verr_verw(c, i, false); }
void h_verw(Cpu& c, const Insn& i) { h_verr_verw(c, i, true); }

void h_smsw(Cpu& c, const Insn& i) {
  store_rm16(c, i, i.mem || i.opsize == 2 ? (c.cr0 & 0xffff) : uint32_t(c.cr0));
  advance(c, i);
}

void h_lmsw(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint16_t v = read_rm16(c, i);
  // Only PE, MP, EM, TS; PE can be set but not cleared (LMSW operation).
  constexpr uint64_t msw = cr0::PE | cr0::MP | cr0::EM | cr0::TS;
  uint64_t n = (c.cr0 & ~msw) | (v & msw) | (c.cr0 & cr0::PE);
  write_cr0(c, n);
  advance(c, i);
}

void h_clts(Cpu& c, const Insn& i) {
  require_cpl0(c);
  c.cr0 &= ~cr0::TS;
  advance(c, i);
}

void h_invlpg(Cpu& c, const Insn& i) {
  if (!i.mem) throw fault(Vec::UD);
  require_cpl0(c);
  // No limit or type check: INVLPG never faults on its operand (INVLPG operation).
  uint64_t lin = c.seg[i.seg].base + effective_address(c, i);
  c.tlb_flush_page(lin);
  advance(c, i);
}

void h_arpl(Cpu& c, const Insn& i) {
  require_protected(c);
  uint16_t dst = read_rm16(c, i);
  uint16_t src = uint16_t(c.gpr[i.reg]);
  bool adjust = (dst & 3) < (src & 3);
  if (adjust) {
    uint16_t nv = uint16_t((dst & ~3) | (src & 3));
    if (i.mem) c.write<uint16_t>(i.seg, effective_address(c, i), nv);
    else c.set_reg<uint16_t>(i.rm, nv);
  }
  set_zf(c, adjust);
  advance(c, i);
}

}  // namespace

void register_system_tables(x86::DispatchTable& t) {
  using x86::OpKey;
  using x86::OpMap;
  auto g01 = [&](int8_t g, int8_t mc, x86::Handler h) {
    OpKey k{OpMap::TwoByte, 0x01, g};
    k.modrm_class = mc;
    t.set(k, h);
  };
  constexpr int8_t mem = 0, any = -1;
  g01(0, mem, h_sgdt);
  g01(1, mem, h_sidt);
  g01(2, mem, h_lgdt);
  g01(3, mem, h_lidt);
  g01(4, any, h_smsw);
  g01(6, any, h_lmsw);
  g01(7, mem, h_invlpg);
  auto g00 = [&](int8_t g, x86::Handler h) { t.set(OpKey{OpMap::TwoByte, 0x00, g}, h); };
  g00(0, h_sldt);
  g00(1, h_str);
  g00(2, h_lldt);
  g00(3, h_ltr);
  g00(4, h_verr);
  g00(5, h_verw);
  t.set(OpKey{OpMap::TwoByte, 0x02}, h_lar);
  t.set(OpKey{OpMap::TwoByte, 0x03}, h_lsl);
  t.set(OpKey{OpMap::TwoByte, 0x06}, h_clts);
  t.set(OpKey{OpMap::OneByte, 0x63}, h_arpl);
}

}  // namespace anykvm::soft
