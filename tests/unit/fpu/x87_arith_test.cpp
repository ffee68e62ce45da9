// x87 register-form arithmetic, compares and transcendentals against the host
// x87 (x87_harness.h): every pair of special operands under each rounding
// mode, precision control and exception masking (all masked, all unmasked,
// all but precision unmasked). Results, FSW (C0-C3, TOP, exception flags,
// ES/B), FTW and EFLAGS (FCOMI forms) must match bit for bit.
#include <random>

#include "x87_diff.h"

namespace anykvm::test::x87 {
namespace {

struct OpCase {
  const char* name;
  std::vector<uint8_t> op;
  bool cc = false;
};

std::vector<Case> pair_cases(bool with_unmasked) {
  std::vector<Case> r;
  const auto vals = special_values();
  const auto fcws = all_fcws(with_unmasked);
  size_t k = 0;
  for (const F80& a : vals)
    for (const F80& b : vals) {
      // Every pair under the default FCW and a rotating pair of other FCWs.
      Case c;
      c.a = a;
      c.b = b;
      r.push_back(c);
      for (int j = 0; j < 2; ++j) {
        c.fcw = fcws[(k++) % fcws.size()];
        r.push_back(c);
      }
    }
  return r;
}

void check_ops(const std::vector<OpCase>& ops, const std::vector<Case>& cases) {
  for (const OpCase& o : ops) {
    std::vector<uint8_t> body = cat({prologue(), k_fld_b, k_fld_a, o.op, k_fnsave});
    if (o.cc) body = cat({prologue(), k_fld_b, k_fld_a, o.op, k_setcc, k_fnsave});
    std::string report;
    Compare cmp;
    cmp.cc = o.cc;
    size_t bad = run_diff(body, cases, cmp, report);
    EXPECT_EQ(bad, 0u) << o.name << " (" << cases.size() << " cases)\n" << report;
  }
}

TEST(X87Diff, BinaryArithmetic) {
  X87_REQUIRE_NATIVE();
  check_ops(
      {
          {"fadd st0,st1", {0xd8, 0xc1}}, {"fmul st0,st1", {0xd8, 0xc9}},
          {"fsub st0,st1", {0xd8, 0xe1}}, {"fsubr st0,st1", {0xd8, 0xe9}},
          {"fdiv st0,st1", {0xd8, 0xf1}}, {"fdivr st0,st1", {0xd8, 0xf9}},
          {"fadd st1,st0", {0xdc, 0xc1}}, {"fmul st1,st0", {0xdc, 0xc9}},
          {"fsub st1,st0", {0xdc, 0xe1}}, {"fsubr st1,st0", {0xdc, 0xe9}},
          {"fdiv st1,st0", {0xdc, 0xf1}}, {"fdivr st1,st0", {0xdc, 0xf9}},
          {"faddp", {0xde, 0xc1}},        {"fmulp", {0xde, 0xc9}},
          {"fsubrp", {0xde, 0xe1}},       {"fsubp", {0xde, 0xe9}},
          {"fdivrp", {0xde, 0xf1}},       {"fdivp", {0xde, 0xf9}},
          {"fadd st0,st0", {0xd8, 0xc0}}, {"fadd st0,st5 (empty)", {0xd8, 0xc5}},
      },
      pair_cases(true));
}

TEST(X87Diff, PartialRemainderScaleLog) {
  X87_REQUIRE_NATIVE();
  check_ops(
      {
          {"fprem", {0xd9, 0xf8}},
          {"fprem1", {0xd9, 0xf5}},
          {"fscale", {0xd9, 0xfd}},
          {"fpatan", {0xd9, 0xf3}},
          {"fyl2x", {0xd9, 0xf1}},
          {"fyl2xp1", {0xd9, 0xf9}},
          {"fxch st1", {0xd9, 0xc9}},
          {"fxch st4 (empty)", {0xd9, 0xcc}},
      },
      pair_cases(true));
}

TEST(X87Diff, Compares) {
  X87_REQUIRE_NATIVE();
  check_ops(
      {
          {"fcom st1", {0xd8, 0xd1}},
          {"fcomp st1", {0xd8, 0xd9}},
          {"fcompp", {0xde, 0xd9}},
          {"fucom st1", {0xdd, 0xe1}},
          {"fucomp st1", {0xdd, 0xe9}},
          {"fucompp", {0xda, 0xe9}},
          {"fcomi st1", {0xdb, 0xf1}, true},
          {"fucomi st1", {0xdb, 0xe9}, true},
          {"fcomip st1", {0xdf, 0xf1}, true},
          {"fucomip st1", {0xdf, 0xe9}, true},
          {"fcomi st3 (empty)", {0xdb, 0xf3}, true},
          {"ftst", {0xd9, 0xe4}},
          {"fxam", {0xd9, 0xe5}},
      },
      pair_cases(true));
}

TEST(X87Diff, UnaryAndTranscendental) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (const F80& a : special_values())
    for (uint16_t fcw : all_fcws(true)) {
      Case c;
      c.fcw = fcw;
      c.a = a;
      c.b = {0x8000000000000000ull, 0x3fff};
      cases.push_back(c);
    }
  check_ops(
      {
          {"fchs", {0xd9, 0xe0}},
          {"fabs", {0xd9, 0xe1}},
          {"fsqrt", {0xd9, 0xfa}},
          {"frndint", {0xd9, 0xfc}},
          {"fxtract", {0xd9, 0xf4}},
          {"f2xm1", {0xd9, 0xf0}},
          {"fptan", {0xd9, 0xf2}},
          {"fsin", {0xd9, 0xfe}},
          {"fcos", {0xd9, 0xff}},
          {"fsincos", {0xd9, 0xfb}},
          {"fld st1", {0xd9, 0xc1}},
          {"fst st3", {0xdd, 0xd3}},
          {"fstp st1", {0xdd, 0xd9}},
          {"ffree st0", {0xdd, 0xc0}},
          {"fincstp", {0xd9, 0xf7}},
          {"fdecstp", {0xd9, 0xf6}},
          {"fnop", {0xd9, 0xd0}},
          {"ffreep st0", {0xdf, 0xc0}},
      },
      cases);
}

TEST(X87Diff, Constants) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t fcw : all_fcws(true)) {
    Case c;
    c.fcw = fcw;
    c.a = {0x8000000000000000ull, 0x3fff};
    c.b = c.a;
    cases.push_back(c);
  }
  check_ops({{"fld1", {0xd9, 0xe8}},
             {"fldl2t", {0xd9, 0xe9}},
             {"fldl2e", {0xd9, 0xea}},
             {"fldpi", {0xd9, 0xeb}},
             {"fldlg2", {0xd9, 0xec}},
             {"fldln2", {0xd9, 0xed}},
             {"fldz", {0xd9, 0xee}}},
            cases);
}

// Six constants and two operands fill the stack; the next push overflows.
// Only the last instruction of each body may raise an exception (an unmasked
// one would trap natively at the next waiting instruction).
TEST(X87Diff, StackOverflowUnderflow) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t fcw : {0x037f, 0x037e, 0x0340}) {
    Case c;
    c.fcw = fcw;
    c.a = {0xc000000000000000ull, 0x4000};
    c.b = {0x8000000000000000ull, 0x3fff};
    cases.push_back(c);
  }
  std::vector<uint8_t> push6 = {0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xee, 0xd9, 0xeb};
  std::vector<OpCase> ops = {
      {"fld overflow", cat({push6, {0xd9, 0xe8}})},
      {"fld st0 overflow", cat({push6, {0xd9, 0xc0}})},
      {"fld m80 overflow", cat({push6, k_fld_a})},
      {"fdecstp+fld", {0xd9, 0xf6, 0xd9, 0xe8}},
      {"fstp x2 then fadd (underflow)", {0xdd, 0xd8, 0xdd, 0xd8, 0xd8, 0xc1}},
      {"fstp x2 then fstp (underflow)", {0xdd, 0xd8, 0xdd, 0xd8, 0xdd, 0xd8}},
      {"ffree st1; fadd", {0xdd, 0xc1, 0xd8, 0xc1}},
      {"ffree st1; fxch empty", {0xdd, 0xc1, 0xd9, 0xc9}},
      {"fcompp underflow", {0xdd, 0xd8, 0xde, 0xd9}},
      {"ftst empty", {0xdd, 0xd8, 0xdd, 0xd8, 0xd9, 0xe4}},
      {"fxam empty", {0xdd, 0xd8, 0xdd, 0xd8, 0xd9, 0xe5}},
      {"fptan full", cat({push6, {0xd9, 0xf2}})},
      {"fsincos full", cat({push6, {0xd9, 0xfb}})},
      {"fxtract full", cat({push6, {0xd9, 0xf4}})},
  };
  check_ops(ops, cases);
}

// FCMOVcc under every combination of CF, PF, ZF.
TEST(X87Diff, Fcmov) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint32_t f = 0; f < 8; ++f) {
    Case c;
    c.flags = 2 | ((f & 1) ? 0x01 : 0) | ((f & 2) ? 0x04 : 0) | ((f & 4) ? 0x40 : 0);
    c.a = {0xc000000000000000ull, 0x4000};
    c.b = {0x8000000000000000ull, 0xbfff};
    cases.push_back(c);
  }
  for (uint8_t op : {0xda, 0xdb})
    for (uint8_t m = 0xc0; m < 0xe0; m += 8) {
      std::vector<uint8_t> body =
          cat({prologue(), k_fld_b, k_fld_a, k_load_flags, {op, uint8_t(m + 1)}, k_fnsave});
      std::string report;
      size_t bad = run_diff(body, cases, Compare{}, report);
      EXPECT_EQ(bad, 0u) << std::hex << int(op) << " " << int(m) << "\n" << report;
      // An empty source (ST3) is a stack underflow.
      body = cat({prologue(), k_fld_b, k_fld_a, k_load_flags, {op, uint8_t(m + 3)}, k_fnsave});
      report.clear();
      bad = run_diff(body, cases, Compare{}, report);
      EXPECT_EQ(bad, 0u) << std::hex << int(op) << " " << int(m + 3) << "\n" << report;
    }
}

// Several exception-raising instructions in a row (all masked): the sticky
// flags (IE, SF, ..., PE) accumulate exactly as on the hardware.
TEST(X87Diff, StickyFlagSequences) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t fcw : all_fcws(false)) {
    Case c;
    c.fcw = fcw;
    c.a = {0, 0};
    c.b = {0x8000000000000000ull, 0x3fff};
    cases.push_back(c);
  }
  check_ops(
      {
          {"underflow then 0/0", {0xd8, 0xc5, 0xd9, 0xee, 0xd8, 0xf0}},
          {"0/0 then 1/0 then underflow", {0xd9, 0xee, 0xd8, 0xf0, 0xd9, 0xe8, 0xd8, 0xf1, 0xd8, 0xc6}},
          {"1/3 (PE) then fcom st7", {0xd9, 0xe8, 0xd9, 0xeb, 0xd8, 0xf1, 0xd8, 0xd7}},
          {"overflow then fabs",
           {0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe1}},
          {"fnclex mid-way", {0xd8, 0xc5, 0xdb, 0xe2, 0xd9, 0xee, 0xd8, 0xf0}},
      },
      cases);
}

// C1 after an inexact division (set when it rounded up), then each data
// movement instruction, which must clear it (or leave it, as the hardware does).
TEST(X87Diff, ConditionCodesAfterMoves) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t fcw : all_fcws(false)) {
    Case c;
    c.fcw = fcw;
    c.a = {0xc000000000000000ull, 0x4000};
    c.b = {0x8000000000000000ull, 0xbfff};
    c.mem = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xff, 0x3f, 0, 0, 0, 0};
    cases.push_back(c);
  }
  const std::vector<uint8_t> inexact = {0xd9, 0xeb, 0xd9, 0xe8, 0xde, 0xf1};  // fldpi; fld1; fdivrp
  std::vector<OpCase> ops = {
      {"fld1", {0xd9, 0xe8}},
      {"fldz", {0xd9, 0xee}},
      {"fld st1", {0xd9, 0xc1}},
      {"fxch st1", {0xd9, 0xc9}},
      {"fchs", {0xd9, 0xe0}},
      {"fabs", {0xd9, 0xe1}},
      {"fst st2", {0xdd, 0xd2}},
      {"fstp st1", {0xdd, 0xd9}},
      {"fincstp", {0xd9, 0xf7}},
      {"fdecstp", {0xd9, 0xf6}},
      {"ffree st2", {0xdd, 0xc2}},
      {"fnop", {0xd9, 0xd0}},
      {"fld m32", {0xd9, 0x43, D_MEM}},
      {"fld m80", {0xdb, 0x6b, D_MEM + 2}},
      {"fild m16", {0xdf, 0x43, D_MEM}},
      {"fild m32", {0xdb, 0x43, D_MEM}},
      {"fild m64", {0xdf, 0x6b, D_MEM}},
      {"fld m64", {0xdd, 0x43, D_MEM}},
      {"fstp m80", {0xdb, 0x7b, D_MEM}},
  };
  for (auto& o : ops) o.op.insert(o.op.begin(), inexact.begin(), inexact.end());
  check_ops(ops, cases);
}

// Random sequences mixing the software fast paths (moves, pushes, pops,
// FXCH, FFREE, FINCSTP) with host-executed arithmetic and stores, all
// exceptions masked: stack, tags, TOP and condition codes must track the
// hardware through every interleaving (overflow and underflow included).
TEST(X87Diff, RandomSequences) {
  X87_REQUIRE_NATIVE();
  const std::vector<std::vector<uint8_t>> fixed = {
      {0xd9, 0xe8},       {0xd9, 0xee},       {0xd9, 0xeb},       {0xd9, 0xe0},        {0xd9, 0xe1},
      {0xd9, 0xfa},       {0xd9, 0xf7},       {0xd9, 0xf6},       {0xde, 0xc1},        {0xde, 0xf9},
      {0xde, 0xd9},       {0xd9, 0xfc},       {0xd9, 0xf8},       {0xd9, 0xe5},        {0xdb, 0x6b, D_A},
      {0xd9, 0x43, D_MEM}, {0xdf, 0x43, D_MEM}, {0xdd, 0x43, D_MEM}, {0xdb, 0x7b, D_MEM}, {0xdd, 0x5b, D_MEM},
      {0xdf, 0x5b, D_MEM + 8}, {0xd9, 0xc9}, {0xd9, 0xf4},
  };
  const uint8_t with_i[] = {0xc0 /*D9 fld*/, 0xc8 /*D9 fxch*/, 0xd0 /*DD fst*/, 0xd8 /*DD fstp*/,
                            0xc0 /*DD ffree*/, 0xc0 /*D8 fadd*/, 0xc8 /*D8 fmul*/, 0xf0 /*DC fdiv*/,
                            0xe8 /*DB fucomi*/};
  const uint8_t with_i_op[] = {0xd9, 0xd9, 0xdd, 0xdd, 0xdd, 0xd8, 0xd8, 0xdc, 0xdb};
  std::mt19937_64 g(0x5e9);
  const auto vals = special_values();
  const auto fcws = all_fcws(false);
  for (int n = 0; n < 150; ++n) {
    std::vector<uint8_t> body = cat({prologue(), k_fld_b});
    const int len = 4 + int(g() % 14);
    for (int k = 0; k < len; ++k) {
      if (g() % 2) {
        const auto& f = fixed[g() % fixed.size()];
        body.insert(body.end(), f.begin(), f.end());
      } else {
        const size_t j = g() % sizeof with_i;
        body.push_back(with_i_op[j]);
        body.push_back(uint8_t(with_i[j] + g() % 8));
      }
    }
    body = cat({body, k_fnsave});
    std::vector<Case> cases;
    for (int k = 0; k < 4; ++k) {
      Case c;
      c.fcw = fcws[g() % fcws.size()];
      c.a = vals[g() % vals.size()];
      c.b = vals[g() % vals.size()];
      const uint64_t lo = g();
      std::memcpy(c.mem.data(), &lo, 8);
      cases.push_back(c);
    }
    std::string report;
    Compare cmp;
    cmp.ranges = {{D_MEM, 16}};
    size_t bad = run_diff(body, cases, cmp, report);
    EXPECT_EQ(bad, 0u) << "sequence " << n << ": " << hex(body.data(), body.size()) << "\n" << report;
  }
}

}  // namespace
}  // namespace anykvm::test::x87
