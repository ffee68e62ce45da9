// x87 control instructions against the host: FLDCW/FNSTCW (reserved bits),
// FNSTSW m16/AX, FNCLEX, FLDENV/FNSTENV and FRSTOR/FNSAVE in the 32-bit
// protected-mode layout (tags recomputed from contents, ES/B derived from the
// unmasked flags), the 16-bit layouts (66 prefix), FXRSTOR/FXSAVE images and
// the FXRSTOR -> FNSAVE tag expansion. Pointer fields (FIP/FCS/FOP/FDP/FDS)
// differ by construction (64-bit host vs 32-bit guest) and are not compared.
#include <random>

#include "x87_diff.h"

namespace anykvm::test::x87 {
namespace {

constexpr unsigned D_OUT = 0xe0;  // FNSTENV / FNSTCW / FNSTSW output (28 bytes)
constexpr uint64_t k_osfxsr = 1u << 9;

std::vector<uint8_t> env32(uint16_t fcw, uint16_t fsw, uint16_t ftw) {
  std::vector<uint8_t> e(28, 0);
  std::memcpy(&e[0], &fcw, 2);
  std::memcpy(&e[4], &fsw, 2);
  std::memcpy(&e[8], &ftw, 2);
  return e;
}

TEST(X87Control, FldcwFnstcwFnstsw) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t cw : {0x0000, 0xffff, 0x037f, 0x1234, 0xe0c0, 0x0c7f, 0x027f}) {
    Case c;
    c.fcw = cw;
    c.a = {0xc000000000000000ull, 0x4000};
    c.b = {0x8000000000000000ull, 0x3fff};
    cases.push_back(c);
  }
  // fldcw; fld b; fld a; fdiv (raises PE with masked/unmasked variants);
  // fnstcw [out]; fnstsw [out+2]; fnstsw ax; mov [out+4], ax; fnclex;
  // fnstsw [out+6]; fnsave.
  std::vector<uint8_t> body = cat({prologue(),
                                   k_fld_b,
                                   k_fld_a,
                                   {0xd8, 0xf1},
                                   ea32({0xd9}, 7, D_OUT),
                                   ea32({0xdd}, 7, D_OUT + 2),
                                   {0xdf, 0xe0},
                                   ea32({0x66, 0x89}, 0, D_OUT + 4),
                                   {0xdb, 0xe2},
                                   ea32({0xdd}, 7, D_OUT + 6),
                                   k_fnsave});
  std::string report;
  Compare cmp;
  cmp.ranges = {{D_OUT, 8}};
  EXPECT_EQ(run_diff(body, cases, cmp, report), 0u) << report;
}

TEST(X87Control, FldenvFnstenv32) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  std::mt19937 g(0xe57);
  for (uint16_t fcw : {0x037f, 0x037e, 0x0372, 0x1f7f, 0xffff})
    for (uint16_t fsw : {0x0000, 0x0001, 0x0004, 0x00ff, 0x8080, 0x3800, 0x4700, 0xffff, 0x0020})
      for (uint16_t ftw : {0xffff, 0x0fff, 0xafff, 0x5fff, 0x0000, 0xf0ff}) {
        Case c;
        c.a = {0xc000000000000000ull, 0x4000};
        c.b = {0, 0};
        c.aux = env32(fcw, fsw, ftw);
        for (int k = 12; k < 28; ++k) c.aux[k] = uint8_t(g());
        cases.push_back(c);
      }
  // fld b; fld a; fldenv [aux]; fnstenv [out]; fnsave
  std::vector<uint8_t> body =
      cat({prologue(), k_fld_b, k_fld_a, ea32({0xd9}, 4, D_AUX), ea32({0xd9}, 6, D_OUT), k_fnsave});
  std::string report;
  Compare cmp;
  cmp.ranges = {{D_OUT, 12}};
  EXPECT_EQ(run_diff(body, cases, cmp, report), 0u) << report;
}

TEST(X87Control, FnstenvFldenv16) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t fcw : {0x037f, 0x0c7f, 0x0f7e}) {
    Case c;
    c.fcw = fcw;
    c.a = {0xc000000000000000ull, 0x4000};
    c.b = {0x8000000000000000ull, 0xbfff};
    cases.push_back(c);
  }
  // fld b; fld a; fdiv (flags); o16 fnstenv [out]; fninit; o16 fldenv [out]; fnsave.
  // The 14-byte layout: FCW, FSW, FTW at 0, 2, 4.
  std::vector<uint8_t> body = cat({prologue(),
                                   k_fld_b,
                                   k_fld_a,
                                   {0xd8, 0xf1},
                                   ea32({0x66, 0xd9}, 6, D_OUT),
                                   {0xdb, 0xe3},
                                   ea32({0x66, 0xd9}, 4, D_OUT),
                                   k_fnsave});
  std::string report;
  Compare cmp;
  cmp.ranges = {{D_OUT, 6}, {D_OUT + 14, 14}};
  EXPECT_EQ(run_diff(body, cases, cmp, report), 0u) << report;
}

std::vector<uint8_t> save_image(uint16_t fcw, uint16_t fsw, uint16_t ftw, std::mt19937_64& g) {
  std::vector<uint8_t> img = env32(fcw, fsw, ftw);
  img.resize(108);
  const auto sv = special_values();
  for (int i = 0; i < 8; ++i) {
    F80 v = sv[g() % sv.size()];
    std::memcpy(&img[28 + 10 * i], &v.m, 8);
    std::memcpy(&img[28 + 10 * i + 8], &v.se, 2);
  }
  return img;
}

TEST(X87Control, FrstorFnsave32) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  std::mt19937_64 g(0xf5a7e);
  for (uint16_t fcw : {0x037f, 0x0f7f, 0x0372})
    for (uint16_t fsw : {0x0000, 0x3800, 0x1a41, 0x4704, 0xffff})
      for (uint16_t ftw : {0xffff, 0x0000, 0x5555, 0xaaaa, 0x3c3c, 0xfff0}) {
        Case c;
        c.big = save_image(fcw, fsw, ftw, g);
        cases.push_back(c);
      }
  // frstor [big]; fnsave [save]
  std::vector<uint8_t> body = cat({ea32({0xdd}, 4, D_BIG), k_fnsave});
  std::string report;
  EXPECT_EQ(run_diff(body, cases, Compare{}, report), 0u) << report;
  // And with a 16-bit image: o16 fnsave [out]; o16 frstor [out]; fnsave.
  body = cat({ea32({0xdd}, 4, D_BIG), ea32({0x66, 0xdd}, 6, D_AUX), ea32({0x66, 0xdd}, 4, D_AUX), k_fnsave});
  report.clear();
  EXPECT_EQ(run_diff(body, cases, Compare{}, report), 0u) << "16-bit\n" << report;
}

std::vector<uint8_t> fx_image(uint16_t fcw, uint16_t fsw, uint8_t ftwx, uint32_t mxcsr, std::mt19937_64& g) {
  std::vector<uint8_t> img(512, 0);
  std::memcpy(&img[0], &fcw, 2);
  std::memcpy(&img[2], &fsw, 2);
  img[4] = ftwx;
  std::memcpy(&img[24], &mxcsr, 4);
  const auto sv = special_values();
  for (int i = 0; i < 8; ++i) {
    F80 v = sv[g() % sv.size()];
    std::memcpy(&img[32 + 16 * i], &v.m, 8);
    std::memcpy(&img[32 + 16 * i + 8], &v.se, 2);
  }
  for (int i = 160; i < 288; ++i) img[i] = uint8_t(g());
  return img;
}

TEST(X87Control, FxrstorFxsaveFnsave) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  std::mt19937_64 g(0xf85);
  for (uint16_t fsw : {0x0000, 0x3800, 0x0081, 0x4704})
    for (uint8_t ftwx : {0x00, 0xff, 0x81, 0x3c, 0x0f})
      for (uint32_t mx : {0x1f80u, 0x0000u, 0xffffu}) {
        Case c;
        c.big = fx_image(0x037f, fsw, ftwx, mx, g);
        cases.push_back(c);
      }
  // fxrstor [big]; fxsave [big2]; fnsave [save] (abridged tags expanded).
  std::vector<uint8_t> body = cat({ea32({0x0f, 0xae}, 1, D_BIG), ea32({0x0f, 0xae}, 0, D_BIG2), k_fnsave});
  std::string report;
  Compare cmp;
  // FCW, FSW, abridged FTW, reserved byte; MXCSR; ST0-7 (with padding); XMM0-7.
  cmp.ranges = {{D_BIG2, 6}, {D_BIG2 + 24, 4}, {D_BIG2 + 32, 256}};
  EXPECT_EQ(run_diff(body, cases, cmp, report, 0, k_osfxsr), 0u) << report;
}

}  // namespace
}  // namespace anykvm::test::x87
