// SSE/SSE2/SSE3 floating point against the host: every arithmetic, compare,
// COMIS and conversion form, register and [edi] memory sources, over edge
// operands (zeros, denormals, infinities, QNaN/SNaN, integer-conversion
// boundaries, random bits) under every rounding mode with DAZ/FTZ and sticky
// flags (all exceptions masked: the host would trap otherwise).
#include "simd_harness.h"

namespace anykvm::simdtest {
namespace {

std::vector<Form> four(uint8_t opc) {
  return {{{0x0f, opc}, Lane::F32}, {{0x66, 0x0f, opc}, Lane::F64}, {{0xf3, 0x0f, opc}, Lane::F32},
          {{0xf2, 0x0f, opc}, Lane::F64}};
}

TEST(SimdFloat, AddSubMulDiv) {
  std::vector<Form> f;
  for (uint8_t op : {0x58, 0x59, 0x5c, 0x5e})
    for (auto& x : four(op)) f.push_back(x);
  run_forms("arith", f, false, false);
}

TEST(SimdFloat, MinMaxSqrt) {
  std::vector<Form> f;
  for (uint8_t op : {0x5d, 0x5f, 0x51})
    for (auto& x : four(op)) f.push_back(x);
  run_forms("minmaxsqrt", f, false, false);
}

TEST(SimdFloat, RcpRsqrt) {
  run_forms("rcp", {{{0x0f, 0x52}, Lane::F32}, {{0xf3, 0x0f, 0x52}, Lane::F32}, {{0x0f, 0x53}, Lane::F32},
                    {{0xf3, 0x0f, 0x53}, Lane::F32}},
            false, false);
}

TEST(SimdFloat, CmpAllPredicates) {
  std::vector<Form> f;
  for (auto& x : four(0xc2)) {
    x.imm = Imm::Pred;
    f.push_back(x);
  }
  run_forms("cmp", f, false, false, 400);
}

TEST(SimdFloat, ComisUcomis) {
  run_forms("comi", {{{0x0f, 0x2e}, Lane::F32}, {{0x0f, 0x2f}, Lane::F32}, {{0x66, 0x0f, 0x2e}, Lane::F64},
                     {{0x66, 0x0f, 0x2f}, Lane::F64}},
            false, true, 400);
}

TEST(SimdFloat, Sse3Horizontal) {
  run_forms("sse3", {{{0xf2, 0x0f, 0x7c}, Lane::F32}, {{0xf2, 0x0f, 0x7d}, Lane::F32},
                     {{0x66, 0x0f, 0x7c}, Lane::F64}, {{0x66, 0x0f, 0x7d}, Lane::F64},
                     {{0xf2, 0x0f, 0xd0}, Lane::F32}, {{0x66, 0x0f, 0xd0}, Lane::F64}},
            false, false);
}

TEST(SimdFloat, ConvertFloatFloat) {
  run_forms("cvtff", {{{0x0f, 0x5a}, Lane::F32}, {{0x66, 0x0f, 0x5a}, Lane::F64},
                      {{0xf3, 0x0f, 0x5a}, Lane::F32}, {{0xf2, 0x0f, 0x5a}, Lane::F64}},
            false, false);
}

TEST(SimdFloat, ConvertPackedInt) {
  run_forms("cvtpi", {{{0x0f, 0x5b}, Lane::I32}, {{0x66, 0x0f, 0x5b}, Lane::F32},
                      {{0xf3, 0x0f, 0x5b}, Lane::F32}, {{0xf3, 0x0f, 0xe6}, Lane::I32},
                      {{0x66, 0x0f, 0xe6}, Lane::F64}, {{0xf2, 0x0f, 0xe6}, Lane::F64}},
            false, false);
}

TEST(SimdFloat, ConvertScalarInt) {
  // cvtsi2ss/sd xmm0, ecx|[edi]; cvt(t)ss2si / cvt(t)sd2si eax, xmm1|[edi].
  run_forms("cvtsi", {{{0xf3, 0x0f, 0x2a}, Lane::F32}, {{0xf2, 0x0f, 0x2a}, Lane::F64},
                      {{0xf3, 0x0f, 0x2d}, Lane::F32}, {{0xf3, 0x0f, 0x2c}, Lane::F32},
                      {{0xf2, 0x0f, 0x2d}, Lane::F64}, {{0xf2, 0x0f, 0x2c}, Lane::F64}},
            false, false);
}

TEST(SimdFloat, ConvertMmx) {
  // cvtpi2ps/pd xmm0, mm1|[edi]; cvt(t)ps2pi / cvt(t)pd2pi mm0, xmm1|[edi].
  run_forms("cvtmmx", {{{0x0f, 0x2a}, Lane::I32}, {{0x66, 0x0f, 0x2a}, Lane::I32}, {{0x0f, 0x2d}, Lane::F32},
                       {{0x0f, 0x2c}, Lane::F32}, {{0x66, 0x0f, 0x2d}, Lane::F64},
                       {{0x66, 0x0f, 0x2c}, Lane::F64}},
            true, false);
}

}  // namespace
}  // namespace anykvm::simdtest
