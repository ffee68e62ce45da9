// x87 memory forms against the host x87 (x87_harness.h): loads and
// arithmetic with m16/m32/m64 integers, m32/m64/m80 reals and m80 BCD, and
// every store (FST/FSTP, FIST/FISTP, FISTTP, FBSTP) of special values under
// each rounding mode, precision control and masking. Memory, ST registers,
// FSW and FTW must match; unmasked exceptions must leave memory as the
// hardware does.
#include <random>

#include "x87_diff.h"

namespace anykvm::test::x87 {
namespace {

// ModRM for [ebx+disp8] with ModRM.reg = r.
constexpr uint8_t mem_modrm(unsigned r) { return uint8_t(0x43 | (r << 3)); }

std::array<uint8_t, 16> bytes_of(uint64_t lo, uint64_t hi = 0) {
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), &lo, 8);
  std::memcpy(b.data() + 8, &hi, 8);
  return b;
}

// Memory operand patterns of each size (special encodings plus random ones).
std::vector<std::array<uint8_t, 16>> operands(unsigned kind) {
  std::vector<uint64_t> v;
  switch (kind) {
    case 32:  // m32fp
      v = {0,          0x80000000, 0x3f800000, 0xbf800000, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff,
           0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00000, 0xffc00000, 0x3eaaaaab, 0x40490fdb, 0x4b000001};
      break;
    case 64:  // m64fp
      v = {0,
           0x8000000000000000ull,
           0x3ff0000000000000ull,
           0x0000000000000001ull,
           0x800fffffffffffffull,
           0x0010000000000000ull,
           0x7fefffffffffffffull,
           0x7ff0000000000000ull,
           0xfff0000000000000ull,
           0x7ff8000000000000ull,
           0x7ff4000000000000ull,
           0xfff8000000000000ull,
           0x3fd5555555555555ull,
           0x400921fb54442d18ull};
      break;
    case 16:  // integers (the width is the opcode's)
      v = {0,
           1,
           0xffffffffffffffffull,
           0x8000,
           0x7fff,
           0x80000000,
           0x7fffffff,
           0x8000000000000000ull,
           0x7fffffffffffffffull,
           0x1234,
           0xfffe1234};
      break;
    case 80:  // BCD and m80
      v = {0, 1, 0x99999999, 0x123456789ull, 0x0a, 0xff};
      break;
  }
  std::vector<std::array<uint8_t, 16>> r;
  for (uint64_t x : v) r.push_back(bytes_of(x));
  if (kind == 80) {
    r.push_back(bytes_of(0x9999999999999999ull, 0x8099));  // -999..9
    r.push_back(bytes_of(0x0000000000000042ull, 0x8000));  // -42
    r.push_back(bytes_of(0x00000000000000a0ull, 0x0000));  // invalid digit
    for (const F80& f : special_values()) r.push_back(bytes_of(f.m, f.se));
  }
  std::mt19937_64 g(0x87);
  for (int i = 0; i < 8; ++i) r.push_back(bytes_of(g(), g() & 0xffff));
  return r;
}

struct MemOp {
  const char* name;
  uint8_t op;
  uint8_t reg;
  unsigned kind;
};

void check_loads(const std::vector<MemOp>& ops) {
  const auto fcws = all_fcws(true);
  for (const MemOp& o : ops) {
    std::vector<Case> cases;
    size_t k = 0;
    for (const auto& m : operands(o.kind))
      for (const F80& a : special_values()) {
        Case c;
        c.a = a;
        c.b = {0x8000000000000000ull, 0x3fff};
        c.mem = m;
        cases.push_back(c);
        c.fcw = fcws[k++ % fcws.size()];
        cases.push_back(c);
      }
    std::vector<uint8_t> body =
        cat({prologue(), k_fld_b, k_fld_a, {o.op, mem_modrm(o.reg), D_MEM}, k_fnsave});
    std::string report;
    size_t bad = run_diff(body, cases, Compare{}, report);
    EXPECT_EQ(bad, 0u) << o.name << " (" << cases.size() << " cases)\n" << report;
  }
}

TEST(X87Diff, MemoryLoadsAndArithmetic) {
  X87_REQUIRE_NATIVE();
  std::vector<MemOp> ops = {
      {"fld m32", 0xd9, 0, 32},  {"fld m64", 0xdd, 0, 64},  {"fld m80", 0xdb, 5, 80},
      {"fild m16", 0xdf, 0, 16}, {"fild m32", 0xdb, 0, 16}, {"fild m64", 0xdf, 5, 16},
      {"fbld", 0xdf, 4, 80},
  };
  const char* ar[8] = {"add", "mul", "com", "comp", "sub", "subr", "div", "divr"};
  static std::vector<std::string> names;
  names.reserve(40);
  for (uint8_t r = 0; r < 8; ++r) {
    names.push_back(std::string("f") + ar[r] + " m32");
    ops.push_back({names.back().c_str(), 0xd8, r, 32});
    names.push_back(std::string("f") + ar[r] + " m64");
    ops.push_back({names.back().c_str(), 0xdc, r, 64});
    names.push_back(std::string("fi") + ar[r] + " m32");
    ops.push_back({names.back().c_str(), 0xda, r, 16});
    names.push_back(std::string("fi") + ar[r] + " m16");
    ops.push_back({names.back().c_str(), 0xde, r, 16});
  }
  check_loads(ops);
}

TEST(X87Diff, Stores) {
  X87_REQUIRE_NATIVE();
  const std::vector<MemOp> ops = {
      {"fst m32", 0xd9, 2, 0},    {"fstp m32", 0xd9, 3, 0},   {"fst m64", 0xdd, 2, 0},
      {"fstp m64", 0xdd, 3, 0},   {"fstp m80", 0xdb, 7, 0},   {"fist m16", 0xdf, 2, 0},
      {"fistp m16", 0xdf, 3, 0},  {"fist m32", 0xdb, 2, 0},   {"fistp m32", 0xdb, 3, 0},
      {"fistp m64", 0xdf, 7, 0},  {"fisttp m16", 0xdf, 1, 0}, {"fisttp m32", 0xdb, 1, 0},
      {"fisttp m64", 0xdd, 1, 0}, {"fbstp", 0xdf, 6, 0},
  };
  std::vector<F80> vals = special_values();
  std::mt19937_64 g(0x5107e);
  for (int i = 0; i < 12; ++i)
    vals.push_back({g() | (1ull << 63), uint16_t(0x3ff0 + g() % 0x60 + (g() & 0x8000))});
  for (const MemOp& o : ops) {
    std::vector<Case> cases;
    for (const F80& a : vals)
      for (uint16_t fcw : all_fcws(true)) {
        Case c;
        c.fcw = fcw;
        c.a = a;
        c.b = {0x8000000000000000ull, 0x3fff};
        c.mem.fill(0x5a);
        cases.push_back(c);
      }
    std::vector<uint8_t> body =
        cat({prologue(), k_fld_b, k_fld_a, {o.op, mem_modrm(o.reg), D_MEM}, k_fnsave});
    std::string report;
    Compare cmp;
    cmp.ranges = {{D_MEM, 16}};
    size_t bad = run_diff(body, cases, cmp, report);
    EXPECT_EQ(bad, 0u) << o.name << " (" << cases.size() << " cases)\n" << report;
  }
}

// Stores from an empty register (stack underflow: indefinite when masked,
// memory untouched when not).
TEST(X87Diff, StoreFromEmpty) {
  X87_REQUIRE_NATIVE();
  std::vector<Case> cases;
  for (uint16_t fcw : {0x037f, 0x037e, 0x0360}) {
    Case c;
    c.fcw = fcw;
    c.mem.fill(0x77);
    cases.push_back(c);
  }
  for (auto [op, reg] : std::vector<std::pair<uint8_t, uint8_t>>{
           {0xd9, 3}, {0xdd, 3}, {0xdb, 7}, {0xdf, 3}, {0xdb, 3}, {0xdf, 7}, {0xdd, 1}, {0xdf, 6}}) {
    std::vector<uint8_t> body = cat({prologue(), {op, mem_modrm(reg), D_MEM}, k_fnsave});
    std::string report;
    Compare cmp;
    cmp.ranges = {{D_MEM, 16}};
    size_t bad = run_diff(body, cases, cmp, report);
    EXPECT_EQ(bad, 0u) << std::hex << int(op) << "/" << int(reg) << "\n" << report;
  }
}

}  // namespace
}  // namespace anykvm::test::x87
