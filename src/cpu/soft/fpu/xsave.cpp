// The XSAVE feature set for state components 0 (x87) and 1 (SSE) only (SDM
// vol. 1, chapter 13; vol. 2 XSAVE, XRSTOR, XGETBV, XSETBV): XSAVE/XRSTOR in
// the standard (non-compacted) form, XGETBV (XCR0 only: no XGETBV_ECX_1) and
// XSETBV with KVM's XCR0 rules (arch/x86/kvm/x86.c __kvm_set_xcr: bit 0 set, no
// bit the guest's CPUID leaf 0xD.0 and the engine do not support). The legacy
// region is the FXSAVE layout (fxsave.cpp). Outside 64-bit mode only XMM0-7
// are saved, restored or initialised (13.13).
// XINUSE (13.6) is modelled as "component not in its initial configuration,
// or last loaded from memory by XRSTOR/KVM_SET_XSAVE": reporting 1 is always
// allowed, 0 only when the component is in its initial configuration.
// Leaves out: XSAVEOPT, XSAVEC, XSAVES/XRSTORS (CPUID 0xD.1 EAX = 0).
#include <cstring>

#include "cpu/soft/exec/common.h"
#include "cpu/soft/fpu/fpu.h"
#include "cpu/soft/fpu/x87.h"
#include "cpu/soft/fpu/x87_host.h"

namespace anykvm::soft {
namespace {

constexpr uint64_t k_x87 = xstate::X87, k_sse = xstate::SSE;
constexpr unsigned k_mxcsr = 24, k_st0 = 32, k_xmm0 = 160, k_header = 512;
constexpr uint32_t k_mxcsr_writable = 0x0000ffff;  // as fxsave.cpp (DAZ supported)
constexpr uint32_t k_mxcsr_init = 0x1f80;
constexpr unsigned k_legacy_xmm = 8;  // XMM registers outside 64-bit mode

template <typename T>
T ld(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// SDM vol. 2 "NP" opcodes: a 66, F2 or F3 prefix makes them undefined.
void check_no_prefix(const Cpu& c, const Insn& i) {
  if (i.rep != x86::RepPrefix::None || i.opsize != (c.code32() ? 4 : 2)) throw fault(Vec::UD);
}

// XSAVE/XRSTOR: #UD without CR4.OSXSAVE, #NM with CR0.TS (CR0.EM is not
// checked), #GP(0) unless the linear address is 64-byte aligned.
uint64_t xsave_area(Cpu& c, const Insn& i) {
  if (!(c.cr4 & cr4::OSXSAVE)) throw fault(Vec::UD);
  check_no_prefix(c, i);
  if (c.cr0 & cr0::TS) throw fault(Vec::NM);
  const uint64_t off = ex::ea(c, i);
  if ((c.seg[i.seg].base + off) & 63) throw fault(Vec::GP, 0);
  return off;
}

uint64_t edx_eax(const Cpu& c) { return (uint64_t(uint32_t(c.gpr[ex::k_rdx])) << 32) | uint32_t(c.gpr[ex::k_rax]); }

void h_xsave(Cpu& c, const Insn& i) {
  const uint64_t off = xsave_area(c, i);
  const uint64_t rfbm = c.xcr0 & edx_eax(c);
  alignas(16) uint8_t img[512];
  fpu_to_fxsave(c.fpu, img);
  const auto put = [&](unsigned from, unsigned to) {
    x87::write_bytes(c, i.seg, off + from, i.addrsize, img + from, to - from);
  };
  // 13.7: x87 is bytes 23:0 and 159:32; SSE is MXCSR/MXCSR_MASK (31:24) and
  // the XMM registers; bytes 511:288 (outside 64-bit mode) are not written.
  if (rfbm & k_x87) {
    put(0, k_mxcsr);
    put(k_st0, k_xmm0);
  }
  if (rfbm & k_sse) {
    put(k_mxcsr, k_st0);
    put(k_xmm0, k_xmm0 + 16 * k_legacy_xmm);
  }
  // XSTATE_BV[i] = XINUSE[i] for i in RFBM, other bits as read; no other
  // header byte is written.
  uint8_t hdr[8];
  x87::read_bytes(c, i.seg, off + k_header, i.addrsize, hdr, 8);
  const uint64_t bv = (ld<uint64_t>(hdr) & ~rfbm) | (fpu_xinuse(c.fpu) & rfbm);
  std::memcpy(hdr, &bv, 8);
  x87::write_bytes(c, i.seg, off + k_header, i.addrsize, hdr, 8);
  ex::advance(c, i);
}

void h_xrstor(Cpu& c, const Insn& i) {
  const uint64_t off = xsave_area(c, i);
  const uint64_t rfbm = c.xcr0 & edx_eax(c);
  // 13.8.1: #GP(0) if XSTATE_BV sets a bit XCR0 lacks or header bytes 23:8
  // (XCOMP_BV and the next 8) are not all zero; the compacted form
  // (XCOMP_BV[63]) is not supported, so it falls under the same rule.
  uint8_t hdr[24];
  x87::read_bytes(c, i.seg, off + k_header, i.addrsize, hdr, sizeof hdr);
  const uint64_t bv = ld<uint64_t>(hdr);
  if (bv & ~c.xcr0) throw fault(Vec::GP, 0);
  if (ld<uint64_t>(hdr + 8) | ld<uint64_t>(hdr + 16)) throw fault(Vec::GP, 0);
  alignas(16) uint8_t img[512] = {};
  if (rfbm) x87::read_bytes(c, i.seg, off, i.addrsize, img, k_xmm0 + 16 * k_legacy_xmm);
  // The standard form loads MXCSR whenever RFBM[1] is set, whatever XSTATE_BV[1].
  const uint32_t mxcsr = ld<uint32_t>(img + k_mxcsr);
  if ((rfbm & k_sse) && (mxcsr & ~k_mxcsr_writable)) throw fault(Vec::GP, 0);
  FpuUnit loaded = c.fpu;
  fpu_from_fxsave_partial(loaded, img, k_legacy_xmm);
  FpuUnit& f = c.fpu;
  if (rfbm & k_x87) {
    if (bv & k_x87) {
      f.st = loaded.st;
      f.fcw = loaded.fcw;
      f.fsw = x87::with_summary(loaded.fsw, loaded.fcw);
      f.ftw = loaded.ftw;
      f.fop = loaded.fop;
      f.fip = loaded.fip;
      f.fdp = loaded.fdp;
      f.fcs = loaded.fcs;
      f.fds = loaded.fds;
    } else {
      fpu_init_components(f, k_x87, k_legacy_xmm);
    }
  }
  if (rfbm & k_sse) {
    if (bv & k_sse) {
      for (unsigned r = 0; r < k_legacy_xmm; ++r) f.xmm[r] = loaded.xmm[r];
    } else {
      fpu_init_components(f, k_sse, k_legacy_xmm);
    }
    f.mxcsr = mxcsr;
  }
  // 13.8.3: a component loaded from memory is tracked as in use.
  f.xstate_loaded = uint8_t((f.xstate_loaded & ~rfbm) | (bv & rfbm));
  ex::advance(c, i);
}

// 0F 01 D0 XGETBV, 0F 01 D1 XSETBV; the other 0F 01 /2 register forms
// (VMFUNC, XEND, XTEST, ENCLU) are not implemented: #UD.
void h_xcr(Cpu& c, const Insn& i) {
  if (i.rm > 1) throw fault(Vec::UD);
  if (!(c.cr4 & cr4::OSXSAVE)) throw fault(Vec::UD);
  check_no_prefix(c, i);
  const uint32_t ecx = uint32_t(c.gpr[ex::k_rcx]);
  if (i.rm == 0) {
    if (ecx != 0) throw fault(Vec::GP, 0);  // XCR1 (XINUSE) needs CPUID 0xD.1 EAX[2]
    c.gpr[ex::k_rax] = uint32_t(c.xcr0);
    c.gpr[ex::k_rdx] = uint32_t(c.xcr0 >> 32);
  } else {
    // KVM's kvm_emulate_xsetbv: CPL > 0 (virtual-8086 mode included) or an
    // invalid XCR number or value is #GP(0).
    if (c.cpl != 0 || (c.protected_mode() && c.v86())) throw fault(Vec::GP, 0);
    if (ecx != 0 || !fpu_xcr0_valid(c, edx_eax(c))) throw fault(Vec::GP, 0);
    c.xcr0 = edx_eax(c);
  }
  ex::advance(c, i);
}

}  // namespace

uint64_t fpu_xinuse(const FpuUnit& f) {
  uint64_t u = f.xstate_loaded & xstate::SUPPORTED;
  bool x87_init = f.fcw == 0x037f && f.fsw == 0 && f.ftw == 0xffff && f.fop == 0 && f.fip == 0 && f.fdp == 0 &&
                  f.fcs == 0 && f.fds == 0;
  for (const Float80& r : f.st) x87_init = x87_init && r.mantissa == 0 && r.sign_exp == 0;
  if (!x87_init) u |= k_x87;
  // MXCSR counts too: an MXCSR change must not be lost through KVM_GET_XSAVE,
  // which reports the initial MXCSR for a component that is not in use.
  bool sse_init = f.mxcsr == k_mxcsr_init;
  for (const auto& x : f.xmm) sse_init = sse_init && x[0] == 0 && x[1] == 0;
  if (!sse_init) u |= k_sse;
  return u;
}

void fpu_init_components(FpuUnit& f, uint64_t mask, unsigned n_xmm) {
  if (mask & k_x87) {
    const FpuUnit init{};
    f.st = init.st;
    f.fcw = init.fcw;
    f.fsw = init.fsw;
    f.ftw = init.ftw;
    f.fop = init.fop;
    f.fip = init.fip;
    f.fdp = init.fdp;
    f.fcs = init.fcs;
    f.fds = init.fds;
  }
  if (mask & k_sse)
    for (unsigned r = 0; r < n_xmm && r < f.xmm.size(); ++r) f.xmm[r] = {0, 0};
}

void fpu_set_xsave(FpuUnit& f, const uint8_t legacy[512], uint64_t xstate_bv) {
  // fpu_copy_uabi_to_guest_fpstate: a component whose XSTATE_BV bit is set
  // comes from the image, any other is in its initial configuration when the
  // guest next runs (MXCSR included: it travels with SSE).
  FpuUnit loaded = f;
  fpu_from_fxsave(loaded, legacy);
  if (xstate_bv & k_x87) {
    const uint32_t mxcsr = f.mxcsr;
    const auto xmm = f.xmm;
    f = loaded;
    f.mxcsr = mxcsr;
    f.xmm = xmm;
  } else {
    fpu_init_components(f, k_x87, 16);
  }
  if (xstate_bv & k_sse) {
    f.xmm = loaded.xmm;
    f.mxcsr = loaded.mxcsr;
  } else {
    fpu_init_components(f, k_sse, 16);
    f.mxcsr = k_mxcsr_init;
  }
  f.xstate_loaded = uint8_t(xstate_bv & xstate::SUPPORTED);
}

bool fpu_xcr0_valid(const Cpu& c, uint64_t xcr0) {
  if (!(xcr0 & k_x87)) return false;
  // guest_supported_xcr0: leaf 0xD.0 EDX:EAX of the guest's CPUID, found as
  // KVM finds it (exact function, index when significant), masked by what
  // the engine supports.
  uint64_t guest = 0;
  for (const auto& e : c.cpuid_table) {
    if (e.function != 0xd) continue;
    if ((e.flags & cpu::k_cpuid_flag_significant_index) && e.index != 0) continue;
    guest = (uint64_t(e.edx) << 32 | e.eax) & xstate::SUPPORTED;
    break;
  }
  return !(xcr0 & ~(guest | k_x87));
}

namespace x87 {
void register_xsave(x86::DispatchTable& t) {
  x86::OpKey k{x86::OpMap::TwoByte, 0xae, 4};
  k.modrm_class = 0;
  t.set(k, h_xsave);
  k.group = 5;
  t.set(k, h_xrstor);
  x86::OpKey x{x86::OpMap::TwoByte, 0x01, 2};
  x.modrm_class = 1;
  t.set(x, h_xcr);
}
}  // namespace x87

}  // namespace anykvm::soft
