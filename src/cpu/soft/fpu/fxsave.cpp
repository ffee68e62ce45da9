// The FXSAVE image (SDM vol. 1, 10.5.1, table 10-2, the non-64-bit layout):
// conversions for the KVM FPU ioctls (fpu_to_fxsave/fpu_from_fxsave, a bit-
// exact round trip of FpuUnit, whose tags are always the canonical full tags)
// and the FXSAVE/FXRSTOR/LDMXCSR/STMXCSR instructions (0F AE /0../3).
// FIP/FDP are 32-bit offsets with FCS/FDS beside them, so the KVM view's
// 64-bit last_ip/last_dp read as selector:offset. CR4.OSFXSR = 0 leaves
// XMM0-7 unsaved/unloaded (implementation-dependent in the SDM; this is the
// P6 behaviour); MXCSR is always transferred. Bytes 288-511 are not touched.
#include <cstring>

#include "cpu/soft/exec/common.h"
#include "cpu/soft/fpu/fpu.h"
#include "cpu/soft/fpu/x87.h"
#include "cpu/soft/fpu/x87_host.h"

namespace anykvm::soft {
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

// FXSAVE image offsets.
constexpr unsigned k_fcw = 0, k_fsw = 2, k_ftw = 4, k_fop = 6, k_fip = 8, k_fcs = 12, k_fdp = 16, k_fds = 20,
                   k_mxcsr = 24, k_mxcsr_mask = 28, k_st0 = 32, k_xmm0 = 160;
// DAZ supported: every MXCSR bit 0-15 is writable.
constexpr uint32_t k_mxcsr_writable = 0x0000ffff;
constexpr unsigned k_guest_image = 288;  // header, ST0-7, XMM0-7

uint8_t abridged_tags(uint16_t ftw) {
  uint8_t a = 0;
  for (unsigned r = 0; r < 8; ++r)
    if (((ftw >> (2 * r)) & 3) != 3) a |= uint8_t(1u << r);
  return a;
}

// The fields of the image's first `n_xmm` XMM registers and everything before.
void from_image(FpuUnit& f, const uint8_t* in, unsigned n_xmm) {
  f.fcw = ld<uint16_t>(in + k_fcw);
  f.fsw = ld<uint16_t>(in + k_fsw);
  f.fop = ld<uint16_t>(in + k_fop) & 0x7ff;
  f.fip = ld<uint32_t>(in + k_fip);
  f.fcs = ld<uint16_t>(in + k_fcs);
  f.fdp = ld<uint32_t>(in + k_fdp);
  f.fds = ld<uint16_t>(in + k_fds);
  f.mxcsr = ld<uint32_t>(in + k_mxcsr);
  const unsigned t = x87::top(f);
  for (unsigned i = 0; i < 8; ++i) {
    Float80& r = f.st[(t + i) & 7];
    r.mantissa = ld<uint64_t>(in + k_st0 + 16 * i);
    r.sign_exp = ld<uint16_t>(in + k_st0 + 16 * i + 8);
  }
  const uint8_t a = in[k_ftw];
  uint16_t full = 0;
  for (unsigned r = 0; r < 8; ++r) full |= uint16_t(((a >> r) & 1 ? 0 : 3) << (2 * r));
  f.ftw = x87::canonical_tags(f, full);
  for (unsigned i = 0; i < n_xmm; ++i) {
    f.xmm[i][0] = ld<uint64_t>(in + k_xmm0 + 16 * i);
    f.xmm[i][1] = ld<uint64_t>(in + k_xmm0 + 16 * i + 8);
  }
}

inline void check_fxsr_nm(Cpu& c) {
  if (c.cr0 & (cr0::EM | cr0::TS)) throw fault(Vec::NM);
}
inline void check_sse_avail(Cpu& c) {
  if ((c.cr0 & cr0::EM) || !(c.cr4 & cr4::OSFXSR)) throw fault(Vec::UD);
  if (c.cr0 & cr0::TS) throw fault(Vec::NM);
}
// 16-byte alignment of the linear address, else #GP(0) (FXSAVE/FXRSTOR pages).
inline void check_align16(Cpu& c, const Insn& i, uint64_t off) {
  if ((c.seg[i.seg].base + off) & 15) throw fault(Vec::GP, 0);
}

void h_fxsave(Cpu& c, const Insn& i) {
  check_fxsr_nm(c);
  const uint64_t off = ex::ea(c, i);
  check_align16(c, i, off);
  alignas(16) uint8_t img[512];
  fpu_to_fxsave(c.fpu, img);
  const unsigned n = (c.cr4 & cr4::OSFXSR) ? k_guest_image : k_xmm0;
  x87::write_bytes(c, i.seg, off, i.addrsize, img, n);
  ex::advance(c, i);
}

void h_fxrstor(Cpu& c, const Insn& i) {
  check_fxsr_nm(c);
  const uint64_t off = ex::ea(c, i);
  check_align16(c, i, off);
  const bool xmm = c.cr4 & cr4::OSFXSR;
  alignas(16) uint8_t img[512] = {};
  x87::read_bytes(c, i.seg, off, i.addrsize, img, xmm ? k_guest_image : k_xmm0);
  if (ld<uint32_t>(img + k_mxcsr) & ~k_mxcsr_writable) throw fault(Vec::GP, 0);
  from_image(c.fpu, img, xmm ? 8 : 0);
  c.fpu.fsw = x87::with_summary(c.fpu.fsw, c.fpu.fcw);
  ex::advance(c, i);
}

void h_ldmxcsr(Cpu& c, const Insn& i) {
  check_sse_avail(c);
  const uint32_t v = c.read<uint32_t>(i.seg, ex::ea(c, i));
  if (v & ~k_mxcsr_writable) throw fault(Vec::GP, 0);
  c.fpu.mxcsr = v;
  ex::advance(c, i);
}

void h_stmxcsr(Cpu& c, const Insn& i) {
  check_sse_avail(c);
  c.write<uint32_t>(i.seg, ex::ea(c, i), c.fpu.mxcsr);
  ex::advance(c, i);
}

}  // namespace

void fpu_to_fxsave(const FpuUnit& f, uint8_t out[512]) {
  std::memset(out, 0, 512);
  st<uint16_t>(out + k_fcw, f.fcw);
  st<uint16_t>(out + k_fsw, f.fsw);
  out[k_ftw] = abridged_tags(f.ftw);
  st<uint16_t>(out + k_fop, f.fop);
  st<uint32_t>(out + k_fip, uint32_t(f.fip));
  st<uint16_t>(out + k_fcs, f.fcs);
  st<uint32_t>(out + k_fdp, uint32_t(f.fdp));
  st<uint16_t>(out + k_fds, f.fds);
  st<uint32_t>(out + k_mxcsr, f.mxcsr);
  st<uint32_t>(out + k_mxcsr_mask, k_mxcsr_writable);
  const unsigned t = x87::top(f);
  for (unsigned i = 0; i < 8; ++i) {
    const Float80& r = f.st[(t + i) & 7];
    st<uint64_t>(out + k_st0 + 16 * i, r.mantissa);
    st<uint16_t>(out + k_st0 + 16 * i + 8, r.sign_exp);
  }
  for (unsigned i = 0; i < 16; ++i) {
    st<uint64_t>(out + k_xmm0 + 16 * i, f.xmm[i][0]);
    st<uint64_t>(out + k_xmm0 + 16 * i + 8, f.xmm[i][1]);
  }
}

void fpu_from_fxsave(FpuUnit& f, const uint8_t in[512]) { from_image(f, in, 16); }
void fpu_from_fxsave_partial(FpuUnit& f, const uint8_t in[512], unsigned n_xmm) { from_image(f, in, n_xmm); }

void fpu_reset(FpuUnit& f) { f = FpuUnit{}; }

namespace x87 {
void register_fxsr(x86::DispatchTable& t) {
  const x86::Handler mem[4] = {h_fxsave, h_fxrstor, h_ldmxcsr, h_stmxcsr};
  for (int8_t g = 0; g < 4; ++g) {
    x86::OpKey k{x86::OpMap::TwoByte, 0xae, g};
    k.modrm_class = 0;
    t.set(k, mem[g]);
    k.modrm_class = 1;
    t.set(k, [](Cpu&, const Insn&) { throw fault(Vec::UD); });
  }
}
}  // namespace x87

}  // namespace anykvm::soft
