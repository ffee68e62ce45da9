// MMX and SSE2 packed integer instructions against the host, both widths, over
// saturation edges (7F/80/FF, 7FFF/8000/FFFF, ...), random bits and shift
// counts from 0 to 70 (by register, by memory and by immediate).
#include "simd_harness.h"

namespace anykvm::simdtest {
namespace {

std::vector<Form> both(std::initializer_list<uint8_t> ops, bool small_count = false) {
  std::vector<Form> f;
  for (uint8_t op : ops) {
    f.push_back(Form{{0x0f, op}, Lane::I32, Imm::None, Modrm::Both, 0, small_count});
    f.push_back(Form{{0x66, 0x0f, op}, Lane::I32, Imm::None, Modrm::Both, 0, small_count});
  }
  return f;
}

TEST(SimdInt, AddSubSaturating) {
  run_forms("addsub", both({0xd4, 0xd8, 0xd9, 0xdc, 0xdd, 0xe8, 0xe9, 0xec, 0xed, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc,
                            0xfd, 0xfe}),
            true, false, 200);
}

TEST(SimdInt, MultiplyAverageSad) {
  run_forms("mul", both({0xd5, 0xe4, 0xe5, 0xf4, 0xf5, 0xf6, 0xe0, 0xe3}), true, false, 200);
}

TEST(SimdInt, MinMaxCompareLogic) {
  run_forms("cmp", both({0xda, 0xde, 0xea, 0xee, 0x64, 0x65, 0x66, 0x74, 0x75, 0x76, 0xdb, 0xdf, 0xeb, 0xef}), true,
            false, 200);
}

TEST(SimdInt, PackUnpack) {
  auto f = both({0x60, 0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6a, 0x6b});
  f.push_back(Form{{0x66, 0x0f, 0x6c}, Lane::I32});
  f.push_back(Form{{0x66, 0x0f, 0x6d}, Lane::I32});
  run_forms("pack", f, true, false, 200);
}

TEST(SimdInt, ShiftByRegister) {
  run_forms("shreg", both({0xd1, 0xd2, 0xd3, 0xe1, 0xe2, 0xf1, 0xf2, 0xf3}, true), true, false, 200);
}

TEST(SimdInt, ShiftByImmediate) {
  std::vector<Form> f;
  for (uint8_t op : {0x71, 0x72, 0x73}) {
    for (uint8_t grp : {2, 4, 6, 3, 7}) {
      if (op == 0x73 && grp == 4) continue;
      if (op != 0x73 && (grp == 3 || grp == 7)) continue;
      if (grp != 3 && grp != 7) f.push_back(Form{{0x0f, op}, Lane::I32, Imm::Byte, Modrm::RegOnly, grp});
      f.push_back(Form{{0x66, 0x0f, op}, Lane::I32, Imm::Byte, Modrm::RegOnly, grp});
    }
  }
  run_forms("shimm", f, true, false, 150);
}

TEST(SimdInt, ShuffleInsertExtract) {
  run_forms("shuf", {{{0x0f, 0x70}, Lane::I32, Imm::Byte}, {{0x66, 0x0f, 0x70}, Lane::I32, Imm::Byte},
                     {{0xf3, 0x0f, 0x70}, Lane::I32, Imm::Byte}, {{0xf2, 0x0f, 0x70}, Lane::I32, Imm::Byte},
                     {{0x0f, 0xc4}, Lane::I32, Imm::Byte}, {{0x66, 0x0f, 0xc4}, Lane::I32, Imm::Byte},
                     {{0x0f, 0xc5}, Lane::I32, Imm::Byte, Modrm::RegOnly},
                     {{0x66, 0x0f, 0xc5}, Lane::I32, Imm::Byte, Modrm::RegOnly},
                     {{0x0f, 0xd7}, Lane::I32, Imm::None, Modrm::RegOnly},
                     {{0x66, 0x0f, 0xd7}, Lane::I32, Imm::None, Modrm::RegOnly}},
            true, false, 200);
}

// The x87 -> MMX transition (SDM vol. 1, 9.5.1) and EMMS.
TEST(SimdInt, MmxTransitionAndEmms) {
  Harness& h = harness();
  Ctx in;
  std::memset(&in, 0, sizeof in);
  in.gpr[7] = k_mem;
  in.mxcsr = 0x1f80;
  in.mm[1] = 0x0102030405060708ull;
  soft::Cpu& c = h.cpu();
  (void)c;
  // paddb mm0, mm1 with TOP = 5 and all tags empty beforehand.
  h.cpu().fpu.fsw = 5 << 11;
  h.cpu().fpu.ftw = 0xffff;
  // The engine run overwrites mantissas from `in`; fsw/ftw stay as set here.
  Result r = h.engine({0x0f, 0xfc, 0xc1}, in);
  EXPECT_EQ(r.vector, -1);
  EXPECT_EQ(h.cpu().fpu.fsw & 0x3800, 0);
  EXPECT_EQ(h.cpu().fpu.ftw, 0);
  EXPECT_EQ(h.cpu().fpu.st[0].sign_exp, 0xffff);
  EXPECT_EQ(h.cpu().fpu.st[0].mantissa, 0x0102030405060708ull);
  r = h.engine({0x0f, 0x77}, in);  // emms
  EXPECT_EQ(r.vector, -1);
  EXPECT_EQ(h.cpu().fpu.ftw, 0xffff);
}

}  // namespace
}  // namespace anykvm::simdtest
