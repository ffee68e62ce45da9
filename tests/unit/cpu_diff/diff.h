// Running case families on both sides and comparing them. A family (a name,
// a memory-window size and a generator) runs once per process; the result is
// cached so that the defined-behaviour test (CpuDiff<Group>.<Name>) and the
// undefined-behaviour test (CpuDiffUndefined.<Group>_<Name>) of the same
// family share one run. Random operands come from a fixed seed (printed;
// override with ANYKVM_DIFF_SEED) mixed with the family name.
#pragma once
#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "diff_case.h"

namespace anykvm::difftest {

class Rng {
 public:
  explicit Rng(uint64_t seed) : m_g(seed) {}
  uint32_t u32() { return uint32_t(m_g()); }
  uint32_t below(uint32_t n) { return uint32_t(m_g() % n); }
  bool coin() { return m_g() & 1; }
  // Random status flags and, if `df`, a random DF (IF and bit 1 set).
  uint32_t flags(bool df = false) {
    uint32_t f = (u32() & fl::STATUS) | fl::FIXED1 | fl::IF;
    return df && coin() ? f | fl::DF : f;
  }

 private:
  std::mt19937_64 m_g;
};

uint64_t diff_seed();

struct FamilySpec {
  const char* name;
  uint32_t window;  // bytes of memory per case (0: register-only)
  std::function<void(std::vector<Case>&, Rng&)> gen;
};

struct FamilyResult {
  size_t cases = 0;
  size_t faults = 0;  // cases where both sides raised the same exception
  size_t defined_mismatches = 0;
  size_t undefined_compared = 0;  // cases with at least one undefined flag or register
  size_t undefined_mismatches = 0;
  bool needs_seg16 = false;  // not run: the family needs SEL16 and the host refused it
  std::string defined_report, undefined_report;  // the first few mismatches, in full
};

// Runs a family once per process (cached by name).
const FamilyResult& run_family(const FamilySpec& spec);

// Runs cases without caching, natively and in the engine (or on the two
// runners given: the harness tests plant differences this way).
FamilyResult run_cases(const char* name, const std::vector<Case>& cases, uint32_t window);
FamilyResult run_cases(const char* name, const std::vector<Case>& cases, uint32_t window, Runner& a, Runner& b);
// Runs cases on one side only.
std::vector<Outcome> run_one_side(Runner& r, const std::vector<Case>& cases, uint32_t window,
                                  std::vector<std::vector<uint8_t>>* windows_out = nullptr);
Runner& native_runner();
bool native_available();
// True when the native side installed the SEL16 LDT segment (modify_ldt(2)).
bool seg16_available();
Runner& engine_runner();

// Intel-syntax text of a case's code (the engine's disassembler), for reports.
std::string disasm(const std::vector<uint8_t>& code, uint32_t addr);
std::string flag_names(uint32_t mask);

void expect_defined(const FamilySpec& spec);
void expect_undefined(const FamilySpec& spec);

}  // namespace anykvm::difftest

// Skips the current test when native execution is impossible on this host.
#define CPU_DIFF_REQUIRE_NATIVE() \
  if (!::anykvm::difftest::native_available()) GTEST_SKIP() << "no RWX mapping below 4 GiB on this host"

// Skips the current test when the 16-bit addressing segment is missing natively.
#define CPU_DIFF_REQUIRE_SEG16() \
  if (!::anykvm::difftest::seg16_available()) GTEST_SKIP() << "modify_ldt(2) refused the 16-bit addressing segment"

// One family, checked for defined behaviour only.
#define CPU_DIFF_FAMILY(Group, Name, window, ...)                                              \
  static const ::anykvm::difftest::FamilySpec k_family_##Group##_##Name{#Group "." #Name, window, \
                                                                        __VA_ARGS__};          \
  TEST(CpuDiff##Group, Name) { ::anykvm::difftest::expect_defined(k_family_##Group##_##Name); }

// One family whose instructions leave some flags or results undefined: the
// defined part in CpuDiff<Group>, the undefined part in CpuDiffUndefined.
#define CPU_DIFF_FAMILY_U(Group, Name, window, ...)                                      \
  CPU_DIFF_FAMILY(Group, Name, window, __VA_ARGS__)                                      \
  TEST(CpuDiffUndefined, Group##_##Name) {                                               \
    ::anykvm::difftest::expect_undefined(k_family_##Group##_##Name);                     \
  }
