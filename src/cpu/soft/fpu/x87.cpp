// x87 FPU instructions (escape opcodes D8-DF and WAIT, SDM vol. 1 ch. 8 and
// vol. 2 instruction pages). Arithmetic, conversions, compares and
// transcendentals run on the host x87 (x87_host.h) for bit-exact results;
// exception-free data movement (FLD/FILD/FXCH/FST ST(i)/FSTP m80/FCHS/...)
// has a software fast path that falls back to the host on any special case;
// control instructions (FNINIT, FNCLEX, FLDCW/FNSTCW, FNSTSW, FLDENV/FNSTENV,
// FRSTOR/FNSAVE in the 16/32-bit real/protected layouts of SDM vol. 1, 8.1.10)
// are done here. Checks (SDM vol. 3, 2.5 and table 2-2): CR0.EM or CR0.TS ->
// #NM; a waiting instruction with an unmasked exception pending (FSW.ES) ->
// #MF when CR0.NE = 1; with CR0.NE = 0, FERR# -> IRQ 13 through an in-kernel
// PIC (fpu_pending_error), else #MF as Linux KVM. Memory operands are
// read before, and stores written before, any FPU state changes (MMIO restart).
// Reserved register-form aliases (D9 D8-DF, DC D0-DF, DD C8-CF, DE D0-D8/DA-DF,
// DF C8-DF) raise #UD. FIP/FCS/FOP/FDP/FDS follow the last non-control
// instruction.
#include "cpu/soft/fpu/x87.h"

#include <cstring>

#include "cpu/soft/exec/common.h"
#include "cpu/soft/fpu/fpu.h"
#include "cpu/soft/fpu/x87_host.h"

namespace anykvm::soft::x87 {

using ex::addr_mask;
using ex::advance;
using ex::ea;
using x86::DispatchTable;
using x86::OpKey;
using x86::OpMap;

void read_bytes(Cpu& c, uint8_t seg, uint64_t off, unsigned addrsize, uint8_t* buf, unsigned n) {
  const uint64_t m = addr_mask(addrsize);
  unsigned k = 0;
  while (k < n) {
    const uint64_t a = (off + k) & m;
    if (n - k >= 8) {
      uint64_t v = c.read<uint64_t>(seg, a);
      std::memcpy(buf + k, &v, 8);
      k += 8;
    } else if (n - k >= 4) {
      uint32_t v = c.read<uint32_t>(seg, a);
      std::memcpy(buf + k, &v, 4);
      k += 4;
    } else if (n - k >= 2) {
      uint16_t v = c.read<uint16_t>(seg, a);
      std::memcpy(buf + k, &v, 2);
      k += 2;
    } else {
      buf[k] = c.read<uint8_t>(seg, a);
      k += 1;
    }
  }
}

void write_bytes(Cpu& c, uint8_t seg, uint64_t off, unsigned addrsize, const uint8_t* buf, unsigned n) {
  const uint64_t m = addr_mask(addrsize);
  // A multi-part store must fault before its first part lands.
  if (n > 8) c.check_write(seg, off & m, n);
  unsigned k = 0;
  while (k < n) {
    const uint64_t a = (off + k) & m;
    if (n - k >= 8) {
      uint64_t v;
      std::memcpy(&v, buf + k, 8);
      c.write<uint64_t>(seg, a, v);
      k += 8;
    } else if (n - k >= 4) {
      uint32_t v;
      std::memcpy(&v, buf + k, 4);
      c.write<uint32_t>(seg, a, v);
      k += 4;
    } else if (n - k >= 2) {
      uint16_t v;
      std::memcpy(&v, buf + k, 2);
      c.write<uint16_t>(seg, a, v);
      k += 2;
    } else {
      c.write<uint8_t>(seg, a, buf[k]);
      k += 1;
    }
  }
}

namespace {

template <typename T>
T ld(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void st(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// ---- checks (SDM vol. 3, table 2-2; vol. 1, 8.7 for the waiting forms) ----
inline void check_nm(Cpu& c) {
  if (c.cr0 & (cr0::EM | cr0::TS)) throw fault(Vec::NM);
}
inline void check_mf(Cpu& c) {
  if ((c.fpu.fsw & sw::ES) || c.ferr) [[unlikely]]
    fpu_pending_error(c);
}

// The x87 instruction and data pointers of a non-control instruction.
inline void note_insn(Cpu& c, const Insn& i) {
  c.fpu.fop = uint16_t(((i.opcode & 7) << 8) | i.modrm);
  c.fpu.fip = c.rip;
  c.fpu.fcs = c.seg[ex::k_cs].selector;
}
inline void note_data(Cpu& c, const Insn& i, uint64_t addr) {
  c.fpu.fdp = addr;
  c.fpu.fds = c.seg[i.seg].selector;
}

// FCW as the hardware keeps it: reserved bits 13-15 read 0, bit 6 reads 1.
inline uint16_t sanitize_fcw(uint16_t v) { return uint16_t((v & 0x1f3f) | 0x40); }

void do_fninit(FpuUnit& f) {
  f.fcw = 0x037f;
  f.fsw = 0;
  f.ftw = 0xffff;
  f.fop = 0;
  f.fip = f.fdp = 0;
  f.fcs = f.fds = 0;
}

// ---- memory forms ----
enum class MemKind : uint8_t { Ud, Load, Store, Fldenv, Fldcw, Fnstenv, Fnstcw, Frstor, Fnsave, Fnstsw };
struct MemForm {
  MemKind kind;
  uint8_t size;
};

// Operand kind and size of each (escape, ModRM.reg) memory form (SDM vol. 2,
// table A-7 .. A-21 x87 opcode maps).
MemForm mem_form(uint8_t op, uint8_t reg) {
  using K = MemKind;
  switch (op) {
    case 0xd8:
      return {K::Load, 4};
    case 0xd9: {
      static constexpr MemForm t[8] = {{K::Load, 4},   {K::Ud, 0},    {K::Store, 4},   {K::Store, 4},
                                       {K::Fldenv, 0}, {K::Fldcw, 2}, {K::Fnstenv, 0}, {K::Fnstcw, 2}};
      return t[reg];
    }
    case 0xda:
      return {K::Load, 4};
    case 0xdb: {
      static constexpr MemForm t[8] = {{K::Load, 4}, {K::Store, 4}, {K::Store, 4}, {K::Store, 4},
                                       {K::Ud, 0},   {K::Load, 10}, {K::Ud, 0},    {K::Store, 10}};
      return t[reg];
    }
    case 0xdc:
      return {K::Load, 8};
    case 0xdd: {
      static constexpr MemForm t[8] = {{K::Load, 8},   {K::Store, 8}, {K::Store, 8},  {K::Store, 8},
                                       {K::Frstor, 0}, {K::Ud, 0},    {K::Fnsave, 0}, {K::Fnstsw, 2}};
      return t[reg];
    }
    case 0xde:
      return {K::Load, 2};
    default: {  // 0xdf
      static constexpr MemForm t[8] = {{K::Load, 2},  {K::Store, 2}, {K::Store, 2},  {K::Store, 2},
                                       {K::Load, 10}, {K::Load, 8},  {K::Store, 10}, {K::Store, 8}};
      return t[reg];
    }
  }
}

// ---- environment / save area layouts (SDM vol. 1, figures 8-9 .. 8-12) ----
inline bool pm_format(const Cpu& c) { return c.protected_mode() && !c.v86(); }
inline unsigned env_size(unsigned opsize) { return opsize == 2 ? 14 : 28; }

void encode_env(const Cpu& c, unsigned opsize, uint8_t* out) {
  const FpuUnit& f = c.fpu;
  const uint16_t ftw = canonical_tags(f, f.ftw);
  const bool pm = pm_format(c);
  const uint32_t fip_lin = uint32_t((uint32_t(f.fcs) << 4) + f.fip);
  const uint32_t fdp_lin = uint32_t((uint32_t(f.fds) << 4) + f.fdp);
  const uint32_t fop = f.fop & 0x7ff;
  if (opsize != 2) {
    st<uint32_t>(out + 0, 0xffff0000u | f.fcw);
    st<uint32_t>(out + 4, 0xffff0000u | f.fsw);
    st<uint32_t>(out + 8, 0xffff0000u | ftw);
    if (pm) {
      st<uint32_t>(out + 12, uint32_t(f.fip));
      st<uint32_t>(out + 16, f.fcs | (fop << 16));
      st<uint32_t>(out + 20, uint32_t(f.fdp));
      st<uint32_t>(out + 24, 0xffff0000u | f.fds);
    } else {
      st<uint32_t>(out + 12, 0xffff0000u | (fip_lin & 0xffff));
      st<uint32_t>(out + 16, fop | ((fip_lin >> 16) << 12));
      st<uint32_t>(out + 20, 0xffff0000u | (fdp_lin & 0xffff));
      st<uint32_t>(out + 24, (fdp_lin >> 16) << 12);
    }
  } else {
    st<uint16_t>(out + 0, f.fcw);
    st<uint16_t>(out + 2, f.fsw);
    st<uint16_t>(out + 4, ftw);
    if (pm) {
      st<uint16_t>(out + 6, uint16_t(f.fip));
      st<uint16_t>(out + 8, f.fcs);
      st<uint16_t>(out + 10, uint16_t(f.fdp));
      st<uint16_t>(out + 12, f.fds);
    } else {
      st<uint16_t>(out + 6, uint16_t(fip_lin));
      st<uint16_t>(out + 8, uint16_t(fop | (((fip_lin >> 16) & 0xf) << 12)));
      st<uint16_t>(out + 10, uint16_t(fdp_lin));
      st<uint16_t>(out + 12, uint16_t(((fdp_lin >> 16) & 0xf) << 12));
    }
  }
}

// Loads an environment into `f` (registers untouched).
void decode_env(const Cpu& c, unsigned opsize, const uint8_t* in, FpuUnit& f) {
  const bool pm = pm_format(c);
  uint16_t fcw, fsw, ftw;
  if (opsize != 2) {
    fcw = ld<uint16_t>(in + 0);
    fsw = ld<uint16_t>(in + 4);
    ftw = ld<uint16_t>(in + 8);
    if (pm) {
      f.fip = ld<uint32_t>(in + 12);
      f.fcs = ld<uint16_t>(in + 16);
      f.fop = ld<uint16_t>(in + 18) & 0x7ff;
      f.fdp = ld<uint32_t>(in + 20);
      f.fds = ld<uint16_t>(in + 24);
    } else {
      const uint32_t w16 = ld<uint32_t>(in + 16), w24 = ld<uint32_t>(in + 24);
      f.fip = ld<uint16_t>(in + 12) | (((w16 >> 12) & 0xffff) << 16);
      f.fop = w16 & 0x7ff;
      f.fdp = ld<uint16_t>(in + 20) | (((w24 >> 12) & 0xffff) << 16);
      f.fcs = f.fds = 0;
    }
  } else {
    fcw = ld<uint16_t>(in + 0);
    fsw = ld<uint16_t>(in + 2);
    ftw = ld<uint16_t>(in + 4);
    if (pm) {
      f.fip = ld<uint16_t>(in + 6);
      f.fcs = ld<uint16_t>(in + 8);
      f.fdp = ld<uint16_t>(in + 10);
      f.fds = ld<uint16_t>(in + 12);
    } else {
      const uint16_t w8 = ld<uint16_t>(in + 8), w12 = ld<uint16_t>(in + 12);
      f.fip = ld<uint16_t>(in + 6) | (uint32_t(w8 >> 12) << 16);
      f.fop = w8 & 0x7ff;
      f.fdp = ld<uint16_t>(in + 10) | (uint32_t(w12 >> 12) << 16);
      f.fcs = f.fds = 0;
    }
  }
  f.fcw = sanitize_fcw(fcw);
  f.fsw = with_summary(fsw, f.fcw);
  f.ftw = canonical_tags(f, ftw);
}

void exec_store_host(Cpu& c, const Insn& i, uint64_t addr, unsigned size) {
  uint8_t img[k_image_size], orig[k_image_size];
  to_image(c.fpu, img);
  std::memcpy(orig, img, sizeof img);
  uint8_t buf[16] = {};
  run(i.opcode, i.modrm, img, buf);
  // With an unmasked exception (other than precision) the hardware may leave
  // memory unwritten; run again over another fill to see whether it stored.
  bool written = true;
  if (ld<uint16_t>(img + 4) & ~c.fpu.fcw & (sw::EXC & ~sw::PE)) {
    uint8_t buf2[16];
    std::memset(buf2, 0xff, sizeof buf2);
    run(i.opcode, i.modrm, orig, buf2);
    written = std::memcmp(buf, buf2, size) == 0;
  }
  if (written) write_bytes(c, i.seg, addr, i.addrsize, buf, size);
  from_image(c.fpu, img);
}

// ---- software fast paths ----
// Data movement that cannot raise an exception once the stack check passed
// (extended-format moves, exact integer and in-range m32/m64 conversions) is
// done here; anything else (a stack fault, NaN, denormal, infinity, rounding)
// goes to the host. C1 = 0 on success (SDM vol. 2 FLD/FST/FXCH/FCHS pages);
// C0, C2, C3 are left alone, as the hardware does.
inline bool is_empty(const FpuUnit& f, unsigned r) { return ((f.ftw >> (2 * r)) & 3) == 3; }
inline unsigned st_reg(const FpuUnit& f, unsigned i) { return (top(f) + i) & 7; }
inline void put_reg(FpuUnit& f, unsigned r, const Float80& v) {
  f.st[r] = v;
  f.ftw = uint16_t((f.ftw & ~(3u << (2 * r))) | (content_tag(v) << (2 * r)));
}
inline void free_reg(FpuUnit& f, unsigned r) { f.ftw |= uint16_t(3u << (2 * r)); }
inline void set_top(FpuUnit& f, unsigned t) {
  f.fsw = uint16_t((f.fsw & ~sw::TOP_MASK) | ((t & 7) << sw::TOP_SHIFT));
}
inline void clear_c1(FpuUnit& f) { f.fsw &= uint16_t(~sw::C1); }

// Push without overflow; false if ST(7) is in use.
bool fast_push(FpuUnit& f, const Float80& v) {
  const unsigned t = (top(f) - 1) & 7;
  if (!is_empty(f, t)) return false;
  set_top(f, t);
  put_reg(f, t, v);
  clear_c1(f);
  return true;
}
inline void pop(FpuUnit& f) {
  free_reg(f, top(f));
  set_top(f, top(f) + 1);
}

Float80 from_int(int64_t v) {
  if (v == 0) return {0, 0};
  const bool neg = v < 0;
  const uint64_t mag = neg ? 0 - uint64_t(v) : uint64_t(v);
  const int lz = __builtin_clzll(mag);
  return {mag << lz, uint16_t((neg ? 0x8000 : 0) | (16383 + 63 - lz))};
}

// The memory operand as an extended value when converting it is exact and
// silent (no SNaN, denormal or special operand).
bool fast_operand(uint8_t op, uint8_t reg, const uint8_t* buf, Float80& out) {
  if (op == 0xd9 && reg == 0) {  // m32fp
    const uint32_t b = ld<uint32_t>(buf);
    const uint32_t e = (b >> 23) & 0xff, m = b & 0x7fffff;
    const uint16_t sign = (b >> 31) ? 0x8000 : 0;
    if (e == 0 && m == 0)
      out = {0, sign};
    else if (e != 0 && e != 0xff)
      out = {(1ull << 63) | (uint64_t(m) << 40), uint16_t(sign | (e - 127 + 16383))};
    else
      return false;
    return true;
  }
  if (op == 0xdd && reg == 0) {  // m64fp
    const uint64_t b = ld<uint64_t>(buf);
    const uint32_t e = (b >> 52) & 0x7ff;
    const uint64_t m = b & ((1ull << 52) - 1);
    const uint16_t sign = (b >> 63) ? 0x8000 : 0;
    if (e == 0 && m == 0)
      out = {0, sign};
    else if (e != 0 && e != 0x7ff)
      out = {(1ull << 63) | (m << 11), uint16_t(sign | (e - 1023 + 16383))};
    else
      return false;
    return true;
  }
  if (op == 0xdb && reg == 5) {  // m80fp: FLD m80 raises nothing but overflow
    out = {ld<uint64_t>(buf), ld<uint16_t>(buf + 8)};
    return true;
  }
  if (op == 0xdf && reg == 0) return out = from_int(int16_t(ld<uint16_t>(buf))), true;  // FILD m16
  if (op == 0xdb && reg == 0) return out = from_int(int32_t(ld<uint32_t>(buf))), true;  // FILD m32
  if (op == 0xdf && reg == 5) return out = from_int(int64_t(ld<uint64_t>(buf))), true;  // FILD m64
  return false;
}

// Register forms handled in software; false sends the instruction to the host.
bool fast_reg(FpuUnit& f, uint8_t op, uint8_t m) {
  const unsigned i = m & 7;
  if (op == 0xd9) {
    switch (m & 0xf8) {
      case 0xc0: {  // FLD ST(i)
        const unsigned src = st_reg(f, i);
        return !is_empty(f, src) && fast_push(f, Float80(f.st[src]));
      }
      case 0xc8: {  // FXCH ST(i)
        const unsigned a = st_reg(f, 0), b = st_reg(f, i);
        if (is_empty(f, a) || is_empty(f, b)) return false;
        const Float80 t = f.st[a];
        put_reg(f, a, f.st[b]);
        put_reg(f, b, t);
        clear_c1(f);
        return true;
      }
      default:
        break;
    }
    switch (m) {
      case 0xd0:
        return true;  // FNOP
      case 0xe0:      // FCHS
      case 0xe1: {    // FABS
        const unsigned a = st_reg(f, 0);
        if (is_empty(f, a)) return false;
        Float80 v = f.st[a];
        v.sign_exp = m == 0xe0 ? uint16_t(v.sign_exp ^ 0x8000) : uint16_t(v.sign_exp & 0x7fff);
        put_reg(f, a, v);
        clear_c1(f);
        return true;
      }
      case 0xe8:
        return fast_push(f, Float80{1ull << 63, 0x3fff});  // FLD1
      case 0xee:
        return fast_push(f, Float80{0, 0});  // FLDZ
      case 0xf6:                             // FDECSTP
      case 0xf7:                             // FINCSTP
        set_top(f, top(f) + (m == 0xf7 ? 1 : 7));
        clear_c1(f);
        return true;
      default:
        return false;
    }
  }
  if (op == 0xdd) {
    switch (m & 0xf8) {
      case 0xc0:  // FFREE ST(i): C1 undefined in the SDM, cleared by the hardware
        free_reg(f, st_reg(f, i));
        clear_c1(f);
        return true;
      case 0xd0:    // FST ST(i)
      case 0xd8: {  // FSTP ST(i)
        const unsigned a = st_reg(f, 0);
        if (is_empty(f, a)) return false;
        put_reg(f, st_reg(f, i), Float80(f.st[a]));
        if ((m & 0xf8) == 0xd8) pop(f);
        clear_c1(f);
        return true;
      }
      default:
        return false;
    }
  }
  return false;
}

// ---- host-executed instructions ----
void exec_load(Cpu& c, const Insn& i, unsigned size) {
  check_nm(c);
  check_mf(c);
  const uint64_t addr = ea(c, i);
  uint8_t buf[16] = {};
  read_bytes(c, i.seg, addr, i.addrsize, buf, size);
  Float80 v;
  if (!(fast_operand(i.opcode, i.reg & 7, buf, v) && fast_push(c.fpu, v))) {
    uint8_t img[k_image_size];
    to_image(c.fpu, img);
    run(i.opcode, i.modrm, img, buf);
    from_image(c.fpu, img);
  }
  note_insn(c, i);
  note_data(c, i, addr);
  advance(c, i);
}

void exec_store(Cpu& c, const Insn& i, unsigned size) {
  check_nm(c);
  check_mf(c);
  const uint64_t addr = ea(c, i);
  if (i.opcode == 0xdb && (i.reg & 7) == 7 && !is_empty(c.fpu, top(c.fpu))) {
    // FSTP m80 of a non-empty register: a plain copy (no exception possible).
    const Float80& r = c.fpu.st[top(c.fpu)];
    uint8_t out[10];
    st<uint64_t>(out, r.mantissa);
    st<uint16_t>(out + 8, r.sign_exp);
    write_bytes(c, i.seg, addr, i.addrsize, out, 10);
    pop(c.fpu);
    clear_c1(c.fpu);
  } else {
    exec_store_host(c, i, addr, size);
  }
  note_insn(c, i);
  note_data(c, i, addr);
  advance(c, i);
}

// Register forms the host may execute (documented encodings only).
bool host_reg_valid(uint8_t op, uint8_t m) {
  switch (op) {
    case 0xd8:
      return true;
    case 0xd9:
      return m <= 0xcf || m == 0xd0 || m == 0xe0 || m == 0xe1 || m == 0xe4 || m == 0xe5 ||
             (m >= 0xe8 && m <= 0xee) || m >= 0xf0;
    case 0xda:
      return m == 0xe9;
    case 0xdb:
      return m >= 0xe8 && m <= 0xf7;
    case 0xdc:
      return m <= 0xcf || m >= 0xe0;
    case 0xdd:
      return m <= 0xc7 || (m >= 0xd0 && m <= 0xef);
    case 0xde:
      return m <= 0xcf || m == 0xd9 || m >= 0xe0;
    default:
      return m <= 0xc7 || (m >= 0xe8 && m <= 0xf7);  // DF: FFREEP, FUCOMIP, FCOMIP
  }
}

// FCMOVcc condition (DA C0-DF: B, E, BE, U; DB C0-DF: the negations).
bool fcmov_cond(const Cpu& c, uint8_t op, uint8_t m) {
  bool r;
  switch ((m >> 3) & 3) {
    case 0:
      r = c.get_cf();
      break;
    case 1:
      r = c.get_zf();
      break;
    case 2:
      r = c.get_cf() || c.get_zf();
      break;
    default:
      r = c.get_pf();
      break;
  }
  return op == 0xda ? r : !r;
}

void h_reg(Cpu& c, const Insn& i) {
  const uint8_t op = i.opcode, m = i.modrm;
  if ((op == 0xda || op == 0xdb) && m < 0xe0) {  // FCMOVcc
    check_nm(c);
    check_mf(c);
    uint8_t img[k_image_size];
    to_image(c.fpu, img);
    run_fcmov(fcmov_cond(c, op, m), m & 7, img);
    from_image(c.fpu, img);
    note_insn(c, i);
    advance(c, i);
    return;
  }
  if (op == 0xdb && m >= 0xe0 && m <= 0xe4) {
    check_nm(c);
    if (m == 0xe2) {  // FNCLEX
      c.fpu.fsw &= uint16_t(~(sw::STICKY | sw::ES | sw::B));
    } else if (m == 0xe3) {  // FNINIT
      do_fninit(c.fpu);
    }
    // E0 FENI, E1 FDISI, E4 FSETPM: no-ops since the 387.
    advance(c, i);
    return;
  }
  if (op == 0xdf && m == 0xe0) {  // FNSTSW AX
    check_nm(c);
    c.set_reg<uint16_t>(ex::k_rax, c.fpu.fsw);
    advance(c, i);
    return;
  }
  if (!host_reg_valid(op, m)) throw fault(Vec::UD);
  check_nm(c);
  check_mf(c);
  if (fast_reg(c.fpu, op, m)) {
    note_insn(c, i);
    advance(c, i);
    return;
  }
  uint8_t img[k_image_size];
  to_image(c.fpu, img);
  const uint64_t rfl = run(op, m, img, nullptr);
  from_image(c.fpu, img);
  if ((op == 0xdb || op == 0xdf) && m >= 0xe8) {
    // FCOMI/FUCOMI(P): ZF, PF, CF from the compare; OF, SF, AF cleared.
    set_flags_materialized(c, uint32_t(rfl) & (fl::ZF | fl::PF | fl::CF));
  }
  note_insn(c, i);
  advance(c, i);
}

void h_mem(Cpu& c, const Insn& i) {
  const MemForm mf = mem_form(i.opcode, i.reg & 7);
  switch (mf.kind) {
    case MemKind::Ud:
      throw fault(Vec::UD);
    case MemKind::Load:
      exec_load(c, i, mf.size);
      return;
    case MemKind::Store:
      exec_store(c, i, mf.size);
      return;
    case MemKind::Fldcw: {
      check_nm(c);
      check_mf(c);
      const uint16_t v = c.read<uint16_t>(i.seg, ea(c, i));
      c.fpu.fcw = sanitize_fcw(v);
      c.fpu.fsw = with_summary(c.fpu.fsw, c.fpu.fcw);
      advance(c, i);
      return;
    }
    case MemKind::Fnstcw:
      check_nm(c);
      c.write<uint16_t>(i.seg, ea(c, i), c.fpu.fcw);
      advance(c, i);
      return;
    case MemKind::Fnstsw:
      check_nm(c);
      c.write<uint16_t>(i.seg, ea(c, i), c.fpu.fsw);
      advance(c, i);
      return;
    case MemKind::Fldenv:
    case MemKind::Frstor: {
      check_nm(c);
      check_mf(c);
      const unsigned es = env_size(i.opsize);
      const unsigned n = es + (mf.kind == MemKind::Frstor ? 80 : 0);
      uint8_t buf[108];
      read_bytes(c, i.seg, ea(c, i), i.addrsize, buf, n);
      FpuUnit f = c.fpu;
      if (mf.kind == MemKind::Frstor) {
        const unsigned t = (ld<uint16_t>(buf + (i.opsize == 2 ? 2 : 4)) >> sw::TOP_SHIFT) & 7;
        for (unsigned k = 0; k < 8; ++k) {
          Float80& r = f.st[(t + k) & 7];
          r.mantissa = ld<uint64_t>(buf + es + 10 * k);
          r.sign_exp = ld<uint16_t>(buf + es + 10 * k + 8);
        }
      }
      decode_env(c, i.opsize, buf, f);
      c.fpu = f;
      advance(c, i);
      return;
    }
    case MemKind::Fnstenv:
    case MemKind::Fnsave: {
      check_nm(c);
      const unsigned es = env_size(i.opsize);
      const unsigned n = es + (mf.kind == MemKind::Fnsave ? 80 : 0);
      uint8_t buf[108];
      encode_env(c, i.opsize, buf);
      if (mf.kind == MemKind::Fnsave) {
        const unsigned t = top(c.fpu);
        for (unsigned k = 0; k < 8; ++k) {
          const Float80& r = c.fpu.st[(t + k) & 7];
          st<uint64_t>(buf + es + 10 * k, r.mantissa);
          st<uint16_t>(buf + es + 10 * k + 8, r.sign_exp);
        }
      }
      write_bytes(c, i.seg, ea(c, i), i.addrsize, buf, n);
      if (mf.kind == MemKind::Fnsave) {
        do_fninit(c.fpu);
      } else {
        c.fpu.fcw |= sw::EXC;  // FNSTENV masks all exceptions after storing
        c.fpu.fsw = with_summary(c.fpu.fsw, c.fpu.fcw);
      }
      advance(c, i);
      return;
    }
  }
}

// WAIT/FWAIT: #NM only when both TS and MP are set; then pending exceptions.
void h_fwait(Cpu& c, const Insn& i) {
  if ((c.cr0 & (cr0::TS | cr0::MP)) == (cr0::TS | cr0::MP)) throw fault(Vec::NM);
  check_mf(c);
  advance(c, i);
}

}  // namespace

void register_x87(DispatchTable& t) {
  for (unsigned op = 0xd8; op <= 0xdf; ++op) {
    for (int8_t g = 0; g < 8; ++g) {
      OpKey k{OpMap::OneByte, uint8_t(op), g};
      k.modrm_class = 0;
      t.set(k, h_mem);
      k.modrm_class = 1;
      t.set(k, h_reg);
    }
  }
  t.set(OpKey{OpMap::OneByte, 0x9b, -1}, h_fwait);
}

}  // namespace anykvm::soft::x87
