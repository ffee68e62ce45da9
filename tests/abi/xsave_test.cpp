// KVM_GET/SET_XSAVE and KVM_GET/SET_XCRS through the real ABI (api.rst 4.42-
// 4.45; Linux 6.1 arch/x86/kvm/x86.c, arch/x86/kernel/fpu/xstate.c): a guest
// computation using x87 and SSE stopped by an OUT exit, its state moved into a
// fresh vCPU, which finishes with the same result bit for bit; the images
// round-trip unchanged; and the errno of each refusal. Also proves
// KVM_CAP_XSAVE and KVM_CAP_XCRS.
#include <cstring>

#include "abi.h"

namespace abitest {
namespace {

struct XsaveBuf {  // struct kvm_xsave as C sizes it (4096 bytes; C++ pads its flexible tail)
  alignas(8) uint8_t b[4096];
};
constexpr unsigned long k_GET_XSAVE = _IOR(KVMIO, 0xa4, XsaveBuf);
constexpr unsigned long k_SET_XSAVE = _IOW(KVMIO, 0xa5, XsaveBuf);
constexpr unsigned long k_GET_XSAVE2 = _IOR(KVMIO, 0xcf, XsaveBuf);
static_assert(k_GET_XSAVE == 0x9000aea4 && k_SET_XSAVE == 0x5000aea5 && k_GET_XSAVE2 == 0x9000aecf);
static_assert(sizeof(kvm_xcrs) == 392);

constexpr uint64_t k_cr4_osfxsr = 1u << 9;
constexpr uint16_t k_port = 0x10;

template <typename T>
T at(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Flat 32-bit protected mode (real-mode x87 code would meet KVM's instruction
// emulator on hosts without unrestricted guests), code at 0x1000; operands at
// 0x1800, results at 0x1c00. x87 with a non-default FCW (round down, single
// precision) and SSE with a non-default MXCSR (round toward zero) before the
// exit; both rounding modes matter after it.
const std::vector<uint8_t> k_code = {
    0xdb, 0xe3,                                // fninit
    0xd9, 0x2d, 0x0c, 0x18, 0, 0,              // fldcw [0x180c]
    0xd9, 0x05, 0x00, 0x18, 0, 0,              // fld dword [0x1800]
    0xd9, 0x05, 0x04, 0x18, 0, 0,              // fld dword [0x1804]
    0xd8, 0xf1,                                // fdiv st0, st1
    0x0f, 0x10, 0x05, 0x10, 0x18, 0, 0,        // movups xmm0, [0x1810]
    0x0f, 0x10, 0x0d, 0x20, 0x18, 0, 0,        // movups xmm1, [0x1820]
    0x0f, 0x59, 0xc1,                          // mulps xmm0, xmm1
    0x0f, 0xae, 0x15, 0x08, 0x18, 0, 0,        // ldmxcsr [0x1808]
    0xe6, k_port,                              // out 0x10, al   <- state moved here
    0x0f, 0x5e, 0xc1,                          // divps xmm0, xmm1
    0xd9, 0xfa,                                // fsqrt
    0xd8, 0xc9,                                // fmul st0, st1
    0xdb, 0x3d, 0x00, 0x1c, 0, 0,              // fstp tword [0x1c00]
    0xdb, 0x3d, 0x10, 0x1c, 0, 0,              // fstp tword [0x1c10]
    0x0f, 0x11, 0x05, 0x20, 0x1c, 0, 0,        // movups [0x1c20], xmm0
    0x0f, 0xae, 0x1d, 0x30, 0x1c, 0, 0,        // stmxcsr [0x1c30]
    0xdf, 0xe0,                                // fnstsw ax
    0xf4,                                      // hlt
};
constexpr size_t k_operands = 0x800, k_results = 0xc00, k_results_size = 0x34;

class Xsave : public Abi {
 protected:
  void SetUp() override {
    Abi::SetUp();
    m_cpuid.nent = 256;
    ASSERT_GE(sys(k_GET_SUPPORTED_CPUID, &m_cpuid), 0);
  }
  void set_operands(Guest& g) {
    uint8_t* d = g.code->ptr + k_operands;
    const float a = 3.0f, b = 10.0f;
    std::memcpy(d, &a, 4);
    std::memcpy(d + 4, &b, 4);
    const uint32_t mxcsr = 0x7f80;  // round toward zero, all masked
    std::memcpy(d + 8, &mxcsr, 4);
    const uint16_t fcw = 0x047f;  // round down, single precision
    std::memcpy(d + 12, &fcw, 2);
    const float x[4] = {1.0f, 2.0f, -7.0f, 1e-3f}, y[4] = {3.0f, 7.0f, 11.0f, 3.0f};
    std::memcpy(d + 0x10, x, 16);
    std::memcpy(d + 0x20, y, 16);
  }
  // Gives a vCPU the guest's CPUID (so XCR0 may hold SSE), CR4.OSFXSR and
  // flat 32-bit protected mode.
  void prepare(int vcpu) {
    ASSERT_EQ(io(vcpu, k_SET_CPUID2, &m_cpuid), 0);
    kvm_sregs s;
    ASSERT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
    auto flat = [](kvm_segment& g, uint16_t sel, uint8_t type) {
      g.base = 0;
      g.limit = 0xffffffff;
      g.selector = sel;
      g.type = type;
      g.present = 1;
      g.dpl = 0;
      g.db = 1;
      g.s = 1;
      g.l = 0;
      g.g = 1;
      g.avl = 0;
      g.unusable = 0;
    };
    flat(s.cs, 0x08, 0xb);
    for (kvm_segment* d : {&s.ds, &s.es, &s.ss, &s.fs, &s.gs}) flat(*d, 0x10, 0x3);
    s.cr0 |= 1;
    s.cr4 |= k_cr4_osfxsr;
    ASSERT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);
  }
  long set_xcr0(int vcpu, uint64_t v) {
    kvm_xcrs x{};
    x.nr_xcrs = 1;
    x.xcrs[0].value = v;
    return io(vcpu, KVM_SET_XCRS, &x);
  }
  CpuidBuf m_cpuid{};
};
ABI_SUITE(Xsave);

TEST_P(Xsave, StateMovesToAFreshVcpuMidComputation) {
  EXPECT_GT(sys(KVM_CHECK_EXTENSION, KVM_CAP_XSAVE), 0);
  EXPECT_GT(sys(KVM_CHECK_EXTENSION, KVM_CAP_XCRS), 0);
  Guest g = real_mode_guest(k_code);
  set_operands(g);
  prepare(g.vcpu);
  ASSERT_EQ(set_xcr0(g.vcpu, 3), 0);
  ASSERT_EQ(run(g), 0);
  // A host KVM that emulates non-paged protected mode (nested, or a software
  // KVM such as PVM) fails on x87 code: the expectations are about the ABI.
  if (on_linux() && g.run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
    GTEST_SKIP() << "this host's KVM cannot run the guest (emulation failure)";
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO));
  ASSERT_EQ(g.run->io.port, k_port);
  kvm_regs regs;
  kvm_sregs sregs;
  XsaveBuf xs;
  kvm_xcrs xcrs;
  std::memset(&xcrs, 0xee, sizeof xcrs);
  ASSERT_EQ(io(g.vcpu, KVM_GET_REGS, &regs), 0);
  ASSERT_EQ(io(g.vcpu, KVM_GET_SREGS, &sregs), 0);
  ASSERT_EQ(io(g.vcpu, k_GET_XSAVE, &xs), 0);
  ASSERT_EQ(io(g.vcpu, KVM_GET_XCRS, &xcrs), 0);
  // What the image says at the exit.
  EXPECT_EQ(at<uint16_t>(xs.b), 0x047f) << "FCW";
  EXPECT_EQ(at<uint32_t>(xs.b + 24), 0x7f80u) << "MXCSR";
  EXPECT_EQ(xs.b[4], 0xc0) << "abridged tags: ST0 and ST1 (R7, R6) valid";
  EXPECT_EQ(at<uint64_t>(xs.b + 512) & 3, 3u) << "XSTATE_BV: x87 and SSE in use";
  EXPECT_EQ(at<uint64_t>(xs.b + 520), 0u) << "XCOMP_BV: standard format";
  EXPECT_EQ(xcrs.nr_xcrs, 1u);
  EXPECT_EQ(xcrs.flags, 0u);
  EXPECT_EQ(xcrs.xcrs[0].xcr, 0u);
  EXPECT_EQ(xcrs.xcrs[0].value, 3u);
  // The original finishes.
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  uint8_t want[k_results_size];
  std::memcpy(want, g.code->ptr + k_results, sizeof want);
  kvm_regs end_regs;
  ASSERT_EQ(io(g.vcpu, KVM_GET_REGS, &end_regs), 0);

  // A fresh vCPU with the saved state finishes the same way.
  auto resume = [&](unsigned long id, bool with_fpu) {
    std::memset(g.code->ptr + k_results, 0, k_results_size);
    const int v = create_vcpu(g.vm, id);
    kvm_run* r = map_run(v);
    prepare(v);
    EXPECT_EQ(io(v, KVM_SET_SREGS, &sregs), 0);
    EXPECT_EQ(io(v, KVM_SET_REGS, &regs), 0);
    if (with_fpu) {
      EXPECT_EQ(io(v, KVM_SET_XCRS, &xcrs), 0);
      EXPECT_EQ(io(v, k_SET_XSAVE, &xs), 0);
      XsaveBuf back;
      kvm_xcrs xback;
      std::memset(&xback, 0xee, sizeof xback);
      EXPECT_EQ(io(v, k_GET_XSAVE, &back), 0);
      EXPECT_EQ(io(v, KVM_GET_XCRS, &xback), 0);
      EXPECT_EQ(std::memcmp(&back, &xs, sizeof xs), 0) << "KVM_GET_XSAVE after KVM_SET_XSAVE";
      EXPECT_EQ(std::memcmp(&xback, &xcrs, sizeof xcrs), 0) << "KVM_GET_XCRS after KVM_SET_XCRS";
    }
    EXPECT_EQ(io(v, KVM_RUN, 0ul), 0);
    EXPECT_EQ(r->exit_reason, uint32_t(KVM_EXIT_HLT));
    kvm_regs rr;
    EXPECT_EQ(io(v, KVM_GET_REGS, &rr), 0);
    return std::make_pair(std::memcmp(g.code->ptr + k_results, want, sizeof want) == 0,
                          (rr.rax & 0xffff) == (end_regs.rax & 0xffff));
  };
  auto same = resume(1, true);
  EXPECT_TRUE(same.first) << "results after the state moved";
  EXPECT_TRUE(same.second) << "FSW after the state moved";
  // Control: without the FPU state the continuation differs (so the
  // comparison above can fail).
  auto control = resume(2, false);
  EXPECT_FALSE(control.first);
  if (!HasFailure()) {
    prove("KVM_CAP_XSAVE");
    prove("KVM_CAP_XCRS");
  }
}

TEST_P(Xsave, GetXsaveOfAFreshVcpu) {
  Guest g = real_mode_guest({0xf4});
  XsaveBuf xs;
  std::memset(&xs, 0xee, sizeof xs);
  ASSERT_EQ(io(g.vcpu, k_GET_XSAVE, &xs), 0);
  EXPECT_EQ(at<uint16_t>(xs.b), 0x037f) << "FCW after reset";
  EXPECT_EQ(at<uint16_t>(xs.b + 2), 0u);
  EXPECT_EQ(xs.b[4], 0u) << "all tags empty";
  EXPECT_EQ(at<uint32_t>(xs.b + 24), 0x1f80u) << "MXCSR";
  for (size_t k = 32; k < 416; ++k) ASSERT_EQ(xs.b[k], 0) << "ST/XMM byte " << k;
  for (size_t k = 416; k < 464; ++k) ASSERT_EQ(xs.b[k], 0) << "reserved byte " << k;
  for (size_t k = 520; k < 576; ++k) ASSERT_EQ(xs.b[k], 0) << "header byte " << k;
  EXPECT_EQ(at<uint64_t>(xs.b + 512) & ~uint64_t(3), 0u) << "XSTATE_BV beyond x87|SSE";
  if (!on_linux()) {
    // _fpx_sw_bytes for the CPU the guest sees: magic, 576 + 4, x87|SSE, 576.
    EXPECT_EQ(at<uint32_t>(xs.b + 464), 0x46505853u);
    EXPECT_EQ(at<uint32_t>(xs.b + 468), 580u);
    EXPECT_EQ(at<uint64_t>(xs.b + 472), 3u);
    EXPECT_EQ(at<uint32_t>(xs.b + 480), 576u);
    for (size_t k = 576; k < 4096; ++k) ASSERT_EQ(xs.b[k], 0) << "byte " << k;
  }
  kvm_xcrs x;
  std::memset(&x, 0xee, sizeof x);
  ASSERT_EQ(io(g.vcpu, KVM_GET_XCRS, &x), 0);
  EXPECT_EQ(x.nr_xcrs, 1u);
  EXPECT_EQ(x.flags, 0u);
  EXPECT_EQ(x.xcrs[0].xcr, 0u);
  EXPECT_EQ(x.xcrs[0].reserved, 0u);
  EXPECT_EQ(x.xcrs[0].value, 1u) << "XCR0 after reset: x87";
  for (int i = 1; i < KVM_MAX_XCRS; ++i) EXPECT_EQ(x.xcrs[i].value, 0u);
  for (uint64_t p : x.padding) EXPECT_EQ(p, 0u);
}

// KVM_CAP_XSAVE2 gives the size KVM_GET_XSAVE2 writes (at least struct
// kvm_xsave's 4096 bytes); its contents are what KVM_GET_XSAVE returns.
TEST_P(Xsave, GetXsave2) {
  Guest g = real_mode_guest({0xf4});
  const long size = sys(KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  EXPECT_EQ(io(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2), size);
  if (on_linux()) {
    ASSERT_GE(size, 4096);  // the host's XSAVE features decide
  } else {
    ASSERT_EQ(size, 4096);
  }
  std::vector<uint8_t> x2(size_t(size) + 64, 0xee);
  ASSERT_EQ(io(g.vcpu, k_GET_XSAVE2, x2.data()), 0);
  XsaveBuf x1;
  ASSERT_EQ(io(g.vcpu, k_GET_XSAVE, &x1), 0);
  EXPECT_EQ(std::memcmp(x1.b, x2.data(), 576), 0) << "legacy region and header";
  for (size_t k = size_t(size); k < x2.size(); ++k) ASSERT_EQ(x2[k], 0xee) << "written past the size: " << k;
  EXPECT_EQ(io(g.vcpu, k_GET_XSAVE2, bad_ptr()), -EFAULT);
  prove("KVM_CAP_XSAVE2");
}

TEST_P(Xsave, SetXsaveErrors) {
  Guest g = real_mode_guest({0xf4});
  EXPECT_EQ(io(g.vcpu, k_GET_XSAVE, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(g.vcpu, k_SET_XSAVE, bad_ptr()), -EFAULT);
  XsaveBuf good;
  ASSERT_EQ(io(g.vcpu, k_GET_XSAVE, &good), 0);
  auto with = [&](size_t off, uint64_t v, size_t n) {
    XsaveBuf b = good;
    std::memcpy(b.b + off, &v, n);
    return io(g.vcpu, k_SET_XSAVE, &b);
  };
  EXPECT_EQ(with(512, 1ull << 63, 8), -EINVAL) << "unsupported XSTATE_BV bit";
  EXPECT_EQ(with(520, 1ull << 63, 8), -EINVAL) << "compacted format";
  EXPECT_EQ(with(520, 2, 8), -EINVAL) << "XCOMP_BV";
  EXPECT_EQ(with(575, 1, 1), -EINVAL) << "reserved header byte";
  // MXCSR reserved bits count only when x87 or SSE is in XSTATE_BV.
  XsaveBuf b = good;
  const uint32_t bad_mxcsr = 0x80001f80;
  std::memcpy(b.b + 24, &bad_mxcsr, 4);
  for (uint64_t bv : {1ull, 2ull, 3ull}) {
    std::memcpy(b.b + 512, &bv, 8);
    EXPECT_EQ(io(g.vcpu, k_SET_XSAVE, &b), -EINVAL) << "bv " << bv;
  }
  const uint64_t zero = 0;
  std::memcpy(b.b + 512, &zero, 8);
  EXPECT_EQ(io(g.vcpu, k_SET_XSAVE, &b), 0) << "bv 0: the legacy region is not read";
  // Bytes the kernel ignores: 416-511 of the legacy region, 576 and above.
  EXPECT_EQ(with(420, ~0ull, 8), 0);
  EXPECT_EQ(with(1000, ~0ull, 8), 0);
}

TEST_P(Xsave, SetXsaveInitialisesComponentsNotInXstateBv) {
  Guest g = real_mode_guest({0xf4});
  prepare(g.vcpu);
  XsaveBuf b;
  ASSERT_EQ(io(g.vcpu, k_GET_XSAVE, &b), 0);
  const uint16_t fcw = 0x0c7f;
  const uint32_t mxcsr = 0x3f80;
  std::memcpy(b.b, &fcw, 2);
  std::memcpy(b.b + 24, &mxcsr, 4);
  b.b[32] = 0x42;   // ST0 mantissa
  b.b[4] = 0x01;    // ST0 valid
  b.b[160] = 0x99;  // XMM0
  for (uint64_t bv : {0ull, 1ull, 2ull, 3ull}) {
    std::memcpy(b.b + 512, &bv, 8);
    ASSERT_EQ(io(g.vcpu, k_SET_XSAVE, &b), 0);
    XsaveBuf back;
    ASSERT_EQ(io(g.vcpu, k_GET_XSAVE, &back), 0);
    EXPECT_EQ(at<uint64_t>(back.b + 512) & 3, bv);
    EXPECT_EQ(at<uint16_t>(back.b), (bv & 1) ? fcw : 0x037f) << bv;
    EXPECT_EQ(back.b[32], (bv & 1) ? 0x42 : 0) << bv;
    EXPECT_EQ(back.b[4], (bv & 1) ? 0x01 : 0) << bv;
    EXPECT_EQ(at<uint32_t>(back.b + 24), (bv & 2) ? mxcsr : 0x1f80u) << bv;
    EXPECT_EQ(back.b[160], (bv & 2) ? 0x99 : 0) << bv;
    // Linux's KVM_GET_FPU reads the kernel's raw buffer, which keeps stale
    // bytes of a component not in XSTATE_BV (the guest never sees them);
    // anykvm reports the state the guest would see (docs/abi-differences.md).
    if (!on_linux()) {
      kvm_fpu f;
      ASSERT_EQ(io(g.vcpu, KVM_GET_FPU, &f), 0);
      EXPECT_EQ(f.fcw, (bv & 1) ? fcw : 0x037f) << bv;
      EXPECT_EQ(f.xmm[0][0], (bv & 2) ? 0x99 : 0) << bv;
    }
  }
}

TEST_P(Xsave, SetXcrsErrors) {
  Guest g = real_mode_guest({0xf4});
  EXPECT_EQ(io(g.vcpu, KVM_GET_XCRS, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(g.vcpu, KVM_SET_XCRS, bad_ptr()), -EFAULT);
  // Without a CPUID leaf 0xD the guest may enable x87 only.
  EXPECT_EQ(set_xcr0(g.vcpu, 3), -EINVAL);
  EXPECT_EQ(set_xcr0(g.vcpu, 1), 0);
  prepare(g.vcpu);
  kvm_xcrs x{};
  x.nr_xcrs = KVM_MAX_XCRS + 1;
  x.xcrs[0].value = 3;
  EXPECT_EQ(io(g.vcpu, KVM_SET_XCRS, &x), -EINVAL) << "too many";
  x.nr_xcrs = 1;
  x.flags = 1;
  EXPECT_EQ(io(g.vcpu, KVM_SET_XCRS, &x), -EINVAL) << "flags";
  EXPECT_EQ(set_xcr0(g.vcpu, 0), -EINVAL) << "x87 bit clear";
  EXPECT_EQ(set_xcr0(g.vcpu, 2), -EINVAL) << "x87 bit clear";
  EXPECT_EQ(set_xcr0(g.vcpu, 1ull << 62 | 3), -EINVAL) << "unsupported bit";
  kvm_xcrs y;
  ASSERT_EQ(io(g.vcpu, KVM_GET_XCRS, &y), 0);
  EXPECT_EQ(y.xcrs[0].value, 1u) << "nothing stuck";
  // Entries for other XCRs are skipped; the first XCR0 entry counts.
  kvm_xcrs z{};
  z.nr_xcrs = 3;
  z.xcrs[0] = {1, 0, 0xdead};
  z.xcrs[1] = {0, 0, 3};
  z.xcrs[2] = {0, 0, 0};
  EXPECT_EQ(io(g.vcpu, KVM_SET_XCRS, &z), 0);
  ASSERT_EQ(io(g.vcpu, KVM_GET_XCRS, &y), 0);
  EXPECT_EQ(y.xcrs[0].value, 3u);
  z.nr_xcrs = 0;
  EXPECT_EQ(io(g.vcpu, KVM_SET_XCRS, &z), 0) << "no entries";
}

}  // namespace
}  // namespace abitest
