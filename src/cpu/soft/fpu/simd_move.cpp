// MMX/SSE data movement with no floating-point semantics (SDM vol. 2, each
// mnemonic): MOVD/MOVQ, MOVUPS/MOVAPS/MOVUPD/MOVAPD/MOVDQA/MOVDQU/LDDQU,
// MOVSS/MOVSD (memory loads zero the upper part, register moves do not),
// MOVLPS/MOVHPS/MOVLPD/MOVHPD/MOVHLPS/MOVLHPS, MOVSLDUP/MOVSHDUP/MOVDDUP,
// the non-temporal stores (plain stores here), MOVMSKPS/PD, PMOVMSKB,
// PEXTRW/PINSRW, MASKMOVQ/MASKMOVDQU (byte-masked store at DS:eDI),
// MOVQ2DQ/MOVDQ2Q, SHUFPS/SHUFPD, UNPCK*PS/PD and the bitwise AND/ANDN/OR/XOR
// PS/PD. None of these changes MXCSR or raises SIMD exceptions.
#include "cpu/soft/fpu/simd_common.h"

namespace anykvm::soft::simd {
namespace {

inline uint32_t lo32(uint64_t v) { return uint32_t(v); }
inline uint32_t hi32(uint64_t v) { return uint32_t(v >> 32); }
inline uint64_t mk64(uint32_t lo, uint32_t hi) { return uint64_t(lo) | (uint64_t(hi) << 32); }

// ---- full-register moves ----
// Load Vx <- Wx (16 bytes).
template <bool Unaligned>
void h_load128(Cpu& c, const Insn& i) {
  check_sse(c);
  V v = get_w(c, i, 16, Unaligned);
  xmm(c, i.reg) = v;
  advance(c, i);
}
// Store Wx <- Vx (16 bytes).
template <bool Unaligned>
void h_store128(Cpu& c, const Insn& i) {
  check_sse(c);
  V v = xmm(c, i.reg);
  if (i.mem) {
    uint64_t off = ea(c, i);
    if (!Unaligned) check_align16(c, i, off);
    write128(c, i.seg, off, v);
  } else {
    xmm(c, i.rm) = v;
  }
  advance(c, i);
}

// MOVSS/MOVSD load (0F 10 F3/F2).
template <unsigned Size>
void h_movs_load(Cpu& c, const Insn& i) {
  check_sse(c);
  if (i.mem) {
    xmm(c, i.reg) = get_w(c, i, Size);
  } else {
    V s = xmm(c, i.rm);
    V& d = xmm(c, i.reg);
    d[0] = Size == 4 ? (d[0] & ~0xffffffffull) | lo32(s[0]) : s[0];
  }
  advance(c, i);
}
// MOVSS/MOVSD store (0F 11 F3/F2).
template <unsigned Size>
void h_movs_store(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = xmm(c, i.reg);
  if (i.mem) {
    if (Size == 4) c.write<uint32_t>(i.seg, ea(c, i), lo32(s[0]));
    else c.write<uint64_t>(i.seg, ea(c, i), s[0]);
  } else {
    V& d = xmm(c, i.rm);
    d[0] = Size == 4 ? (d[0] & ~0xffffffffull) | lo32(s[0]) : s[0];
  }
  advance(c, i);
}

// 0F 12 NP: MOVLPS xmm, m64 / MOVHLPS xmm, xmm; 66: MOVLPD xmm, m64.
void h_movlps_load(Cpu& c, const Insn& i) {
  check_sse(c);
  uint64_t v = i.mem ? c.read<uint64_t>(i.seg, ea(c, i)) : xmm(c, i.rm)[1];
  xmm(c, i.reg)[0] = v;
  advance(c, i);
}
// 0F 16 NP: MOVHPS xmm, m64 / MOVLHPS xmm, xmm; 66: MOVHPD xmm, m64.
void h_movhps_load(Cpu& c, const Insn& i) {
  check_sse(c);
  uint64_t v = i.mem ? c.read<uint64_t>(i.seg, ea(c, i)) : xmm(c, i.rm)[0];
  xmm(c, i.reg)[1] = v;
  advance(c, i);
}
// 0F 13 / 0F 17: store the low / high quadword.
template <int Half>
void h_movq_half_store(Cpu& c, const Insn& i) {
  check_sse(c);
  c.write<uint64_t>(i.seg, ea(c, i), xmm(c, i.reg)[Half]);
  advance(c, i);
}
// MOVSLDUP / MOVSHDUP (m128 aligned) and MOVDDUP (m64).
template <bool High>
void h_movsdup(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16);
  uint32_t a = High ? hi32(s[0]) : lo32(s[0]), b = High ? hi32(s[1]) : lo32(s[1]);
  xmm(c, i.reg) = V{mk64(a, a), mk64(b, b)};
  advance(c, i);
}
void h_movddup(Cpu& c, const Insn& i) {
  check_sse(c);
  uint64_t v = get_w(c, i, 8)[0];
  xmm(c, i.reg) = V{v, v};
  advance(c, i);
}

// MOVNTPS/MOVNTPD/MOVNTDQ: aligned m128 stores.
void h_movnt128(Cpu& c, const Insn& i) { h_store128<false>(c, i); }
void h_movnti(Cpu& c, const Insn& i) {
  c.write<uint32_t>(i.seg, ea(c, i), uint32_t(c.gpr[i.reg]));
  advance(c, i);
}

// ---- MMX/XMM <-> GPR and MMX <-> XMM ----
void h_movd_mm_ey(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint32_t v = ex::get_rm<uint32_t>(c, i);
  mmx_enter(c);
  set_mm(c, i.reg, v);
  advance(c, i);
}
void h_movd_xmm_ey(Cpu& c, const Insn& i) {
  check_sse(c);
  uint32_t v = ex::get_rm<uint32_t>(c, i);
  xmm(c, i.reg) = V{v, 0};
  advance(c, i);
}
void h_movd_ey_mm(Cpu& c, const Insn& i) {
  check_mmx(c);
  ex::put_rm<uint32_t>(c, i, lo32(mm(c, i.reg)));
  mmx_enter(c);
  advance(c, i);
}
void h_movd_ey_xmm(Cpu& c, const Insn& i) {
  check_sse(c);
  ex::put_rm<uint32_t>(c, i, lo32(xmm(c, i.reg)[0]));
  advance(c, i);
}
// 0F 6F NP: MOVQ mm, mm/m64.
void h_movq_load_mm(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint64_t v = get_q(c, i);
  mmx_enter(c);
  set_mm(c, i.reg, v);
  advance(c, i);
}
// 0F 7F NP: MOVQ mm/m64, mm; 0F E7 NP: MOVNTQ m64, mm.
void h_movq_store_mm(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint64_t v = mm(c, i.reg);
  if (i.mem) c.write<uint64_t>(i.seg, ea(c, i), v);
  mmx_enter(c);
  if (!i.mem) set_mm(c, i.rm, v);
  advance(c, i);
}
// F3 0F 7E: MOVQ xmm, xmm/m64 (zero-extends).
void h_movq_xmm_load(Cpu& c, const Insn& i) {
  check_sse(c);
  uint64_t v = get_w(c, i, 8)[0];
  xmm(c, i.reg) = V{v, 0};
  advance(c, i);
}
// 66 0F D6: MOVQ xmm/m64, xmm (a register destination is zero-extended).
void h_movq_xmm_store(Cpu& c, const Insn& i) {
  check_sse(c);
  uint64_t v = xmm(c, i.reg)[0];
  if (i.mem) c.write<uint64_t>(i.seg, ea(c, i), v);
  else xmm(c, i.rm) = V{v, 0};
  advance(c, i);
}
void h_movq2dq(Cpu& c, const Insn& i) {
  check_sse(c);
  check_x87_pending(c);
  uint64_t v = mm(c, i.rm);
  mmx_enter(c);
  xmm(c, i.reg) = V{v, 0};
  advance(c, i);
}
void h_movdq2q(Cpu& c, const Insn& i) {
  check_sse(c);
  check_x87_pending(c);
  uint64_t v = xmm(c, i.rm)[0];
  mmx_enter(c);
  set_mm(c, i.reg, v);
  advance(c, i);
}

// ---- masks and word insert/extract ----
template <bool Double>
void h_movmsk(Cpu& c, const Insn& i) {
  check_sse(c);
  const V& s = xmm(c, i.rm);
  uint32_t m = Double ? uint32_t((s[0] >> 63) | ((s[1] >> 63) << 1))
                      : uint32_t((s[0] >> 31 & 1) | (s[0] >> 63) << 1 | (s[1] >> 31 & 1) << 2 | (s[1] >> 63) << 3);
  c.set_reg<uint32_t>(i.reg, m);
  advance(c, i);
}
inline uint32_t byte_mask(uint64_t q) {
  uint32_t m = 0;
  for (unsigned k = 0; k < 8; ++k) m |= uint32_t((q >> (8 * k + 7)) & 1) << k;
  return m;
}
void h_pmovmskb_mm(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint32_t m = byte_mask(mm(c, i.rm));
  mmx_enter(c);
  c.set_reg<uint32_t>(i.reg, m);
  advance(c, i);
}
void h_pmovmskb_xmm(Cpu& c, const Insn& i) {
  check_sse(c);
  const V& s = xmm(c, i.rm);
  c.set_reg<uint32_t>(i.reg, byte_mask(s[0]) | byte_mask(s[1]) << 8);
  advance(c, i);
}
void h_pextrw_mm(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint32_t w = uint16_t(mm(c, i.rm) >> (16 * (i.imm & 3)));
  mmx_enter(c);
  c.set_reg<uint32_t>(i.reg, w);
  advance(c, i);
}
void h_pextrw_xmm(Cpu& c, const Insn& i) {
  check_sse(c);
  unsigned k = i.imm & 7;
  c.set_reg<uint32_t>(i.reg, uint16_t(xmm(c, i.rm)[k / 4] >> (16 * (k & 3))));
  advance(c, i);
}
inline uint16_t pinsrw_src(Cpu& c, const Insn& i) {
  return i.mem ? c.read<uint16_t>(i.seg, ea(c, i)) : uint16_t(c.gpr[i.rm]);
}
void h_pinsrw_mm(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint16_t w = pinsrw_src(c, i);
  unsigned sh = 16 * (i.imm & 3);
  uint64_t v = (mm(c, i.reg) & ~(0xffffull << sh)) | (uint64_t(w) << sh);
  mmx_enter(c);
  set_mm(c, i.reg, v);
  advance(c, i);
}
void h_pinsrw_xmm(Cpu& c, const Insn& i) {
  check_sse(c);
  uint16_t w = pinsrw_src(c, i);
  unsigned k = i.imm & 7, sh = 16 * (k & 3);
  uint64_t& q = xmm(c, i.reg)[k / 4];
  q = (q & ~(0xffffull << sh)) | (uint64_t(w) << sh);
  advance(c, i);
}

// MASKMOVQ / MASKMOVDQU: store the bytes whose mask byte has bit 7 set to
// DS:eDI (segment override allowed). Contiguous selected bytes are written as
// one access of at most 8 bytes, so at most 8 accesses (MMIO log size).
void masked_store(Cpu& c, const Insn& i, const uint8_t* data, const uint8_t* mask, unsigned n) {
  uint64_t base = c.gpr[ex::k_rdi] & ex::addr_mask(i.addrsize);
  unsigned k = 0;
  while (k < n) {
    if (!(mask[k] & 0x80)) {
      ++k;
      continue;
    }
    unsigned len = 1;
    while (k + len < n && len < 8 && (mask[k + len] & 0x80)) ++len;
    uint64_t off = (base + k) & ex::addr_mask(i.addrsize);
    for (unsigned b = 0; b < len;) {  // split into naturally sized pieces
      unsigned piece = (len - b) >= 4 ? 4 : (len - b) >= 2 ? 2 : 1;
      if (len - b == 8) piece = 8;
      uint64_t o = (off + b) & ex::addr_mask(i.addrsize);
      if (piece == 8) { uint64_t v; std::memcpy(&v, data + k + b, 8); c.write<uint64_t>(i.seg, o, v); }
      else if (piece == 4) { uint32_t v; std::memcpy(&v, data + k + b, 4); c.write<uint32_t>(i.seg, o, v); }
      else if (piece == 2) { uint16_t v; std::memcpy(&v, data + k + b, 2); c.write<uint16_t>(i.seg, o, v); }
      else c.write<uint8_t>(i.seg, o, data[k + b]);
      b += piece;
    }
    k += len;
  }
}
void h_maskmovq(Cpu& c, const Insn& i) {
  check_mmx(c);
  uint64_t d = mm(c, i.reg), m = mm(c, i.rm);
  masked_store(c, i, reinterpret_cast<const uint8_t*>(&d), reinterpret_cast<const uint8_t*>(&m), 8);
  mmx_enter(c);
  advance(c, i);
}
void h_maskmovdqu(Cpu& c, const Insn& i) {
  check_sse(c);
  V d = xmm(c, i.reg), m = xmm(c, i.rm);
  masked_store(c, i, reinterpret_cast<const uint8_t*>(d.data()), reinterpret_cast<const uint8_t*>(m.data()), 16);
  advance(c, i);
}

// ---- shuffles, unpacks and bitwise float ops ----
inline uint32_t dw(const V& v, unsigned k) { return uint32_t(v[k / 2] >> (32 * (k & 1))); }
void h_shufps(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16), d = xmm(c, i.reg);
  unsigned im = unsigned(i.imm);
  xmm(c, i.reg) = V{mk64(dw(d, im & 3), dw(d, (im >> 2) & 3)), mk64(dw(s, (im >> 4) & 3), dw(s, (im >> 6) & 3))};
  advance(c, i);
}
void h_shufpd(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16), d = xmm(c, i.reg);
  xmm(c, i.reg) = V{d[i.imm & 1], s[(i.imm >> 1) & 1]};
  advance(c, i);
}
template <bool High>
void h_unpckps(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16), d = xmm(c, i.reg);
  unsigned b = High ? 2 : 0;
  xmm(c, i.reg) = V{mk64(dw(d, b), dw(s, b)), mk64(dw(d, b + 1), dw(s, b + 1))};
  advance(c, i);
}
template <bool High>
void h_unpckpd(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16), d = xmm(c, i.reg);
  xmm(c, i.reg) = V{d[High], s[High]};
  advance(c, i);
}
enum class Logic { And, Andn, Or, Xor };
template <Logic L>
void h_logic(Cpu& c, const Insn& i) {
  check_sse(c);
  V s = get_w(c, i, 16);
  V& d = xmm(c, i.reg);
  for (int k = 0; k < 2; ++k) {
    switch (L) {
      case Logic::And: d[k] &= s[k]; break;
      case Logic::Andn: d[k] = ~d[k] & s[k]; break;
      case Logic::Or: d[k] |= s[k]; break;
      case Logic::Xor: d[k] ^= s[k]; break;
    }
  }
  advance(c, i);
}

}  // namespace

void register_simd_move(DispatchTable& t) {
  t.set(key(0x10, NP), h_load128<true>);
  t.set(key(0x10, P66), h_load128<true>);
  t.set(key(0x10, PF3), h_movs_load<4>);
  t.set(key(0x10, PF2), h_movs_load<8>);
  t.set(key(0x11, NP), h_store128<true>);
  t.set(key(0x11, P66), h_store128<true>);
  t.set(key(0x11, PF3), h_movs_store<4>);
  t.set(key(0x11, PF2), h_movs_store<8>);
  t.set(key(0x12, NP), h_movlps_load);
  t.set(key(0x12, P66, -1, 0), h_movlps_load);
  t.set(key(0x12, PF3), h_movsdup<false>);
  t.set(key(0x12, PF2), h_movddup);
  t.set(key(0x13, NP, -1, 0), h_movq_half_store<0>);
  t.set(key(0x13, P66, -1, 0), h_movq_half_store<0>);
  t.set(key(0x14, NP), h_unpckps<false>);
  t.set(key(0x14, P66), h_unpckpd<false>);
  t.set(key(0x15, NP), h_unpckps<true>);
  t.set(key(0x15, P66), h_unpckpd<true>);
  t.set(key(0x16, NP), h_movhps_load);
  t.set(key(0x16, P66, -1, 0), h_movhps_load);
  t.set(key(0x16, PF3), h_movsdup<true>);
  t.set(key(0x17, NP, -1, 0), h_movq_half_store<1>);
  t.set(key(0x17, P66, -1, 0), h_movq_half_store<1>);
  t.set(key(0x28, NP), h_load128<false>);
  t.set(key(0x28, P66), h_load128<false>);
  t.set(key(0x29, NP), h_store128<false>);
  t.set(key(0x29, P66), h_store128<false>);
  t.set(key(0x2b, NP, -1, 0), h_movnt128);
  t.set(key(0x2b, P66, -1, 0), h_movnt128);
  t.set(key(0x50, NP, -1, 1), h_movmsk<false>);
  t.set(key(0x50, P66, -1, 1), h_movmsk<true>);
  t.set(key(0x54, NP), h_logic<Logic::And>);
  t.set(key(0x54, P66), h_logic<Logic::And>);
  t.set(key(0x55, NP), h_logic<Logic::Andn>);
  t.set(key(0x55, P66), h_logic<Logic::Andn>);
  t.set(key(0x56, NP), h_logic<Logic::Or>);
  t.set(key(0x56, P66), h_logic<Logic::Or>);
  t.set(key(0x57, NP), h_logic<Logic::Xor>);
  t.set(key(0x57, P66), h_logic<Logic::Xor>);
  t.set(key(0x6e, NP), h_movd_mm_ey);
  t.set(key(0x6e, P66), h_movd_xmm_ey);
  t.set(key(0x6f, NP), h_movq_load_mm);
  t.set(key(0x6f, P66), h_load128<false>);
  t.set(key(0x6f, PF3), h_load128<true>);
  t.set(key(0x7e, NP), h_movd_ey_mm);
  t.set(key(0x7e, P66), h_movd_ey_xmm);
  t.set(key(0x7e, PF3), h_movq_xmm_load);
  t.set(key(0x7f, NP), h_movq_store_mm);
  t.set(key(0x7f, P66), h_store128<false>);
  t.set(key(0x7f, PF3), h_store128<true>);
  t.set(key(0xc3, NP, -1, 0), h_movnti);
  t.set(key(0xc4, NP), h_pinsrw_mm);
  t.set(key(0xc4, P66), h_pinsrw_xmm);
  t.set(key(0xc5, NP, -1, 1), h_pextrw_mm);
  t.set(key(0xc5, P66, -1, 1), h_pextrw_xmm);
  t.set(key(0xc6, NP), h_shufps);
  t.set(key(0xc6, P66), h_shufpd);
  t.set(key(0xd6, P66), h_movq_xmm_store);
  t.set(key(0xd6, PF3, -1, 1), h_movq2dq);
  t.set(key(0xd6, PF2, -1, 1), h_movdq2q);
  t.set(key(0xd7, NP, -1, 1), h_pmovmskb_mm);
  t.set(key(0xd7, P66, -1, 1), h_pmovmskb_xmm);
  t.set(key(0xe7, NP, -1, 0), h_movq_store_mm);
  t.set(key(0xe7, P66, -1, 0), h_movnt128);
  t.set(key(0xf0, PF2, -1, 0), h_load128<true>);
  t.set(key(0xf7, NP, -1, 1), h_maskmovq);
  t.set(key(0xf7, P66, -1, 1), h_maskmovdqu);
}

}  // namespace anykvm::soft::simd
