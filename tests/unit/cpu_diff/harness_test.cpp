// Tests of the differential harness itself, against results known from the
// SDM: the native runner (compatibility mode, register and flag transfer,
// memory windows, #DE caught and the batch resumed, instructions invalid in
// 64-bit mode), the engine runner (transfer, exception delivery) and the
// comparison (a planted difference is found and named).
#include <cstring>

#include "asm.h"

namespace anykvm::difftest {
namespace {

Case with_code(std::initializer_list<uint8_t> code) {
  Case c;
  for (unsigned r = 0; r < 8; ++r) c.gpr[r] = 0x11111111u * (r + 1);
  c.code = code;
  return c;
}

TEST(CpuDiffHarness, NativeRegistersRoundTrip) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case c = with_code({});
  c.eflags = fl::FIXED1 | fl::IF | fl::CF | fl::ZF | fl::OF | fl::DF;
  auto out = run_one_side(native_runner(), {c}, 0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].fault, -1);
  for (unsigned r = 0; r < 8; ++r)
    if (r != ESP) {
      EXPECT_EQ(out[0].gpr[r], c.gpr[r]) << r;
    }
  EXPECT_EQ(out[0].eflags & fl::COMPARED, c.eflags & fl::COMPARED);
}

TEST(CpuDiffHarness, NativeAddSetsFlagsPerSdm) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case c = with_code({0x01, 0xd8});  // add eax, ebx
  c.gpr[EAX] = 0x7fffffff;
  c.gpr[EBX] = 1;
  c.eflags = fl::FIXED1 | fl::IF | fl::CF;
  auto out = run_one_side(native_runner(), {c}, 0);
  EXPECT_EQ(out[0].gpr[EAX], 0x80000000u);
  // Signed overflow, negative, half carry out of bit 3, even parity of 0x00, no carry.
  EXPECT_EQ(out[0].eflags & fl::STATUS, fl::OF | fl::SF | fl::AF | fl::PF);
}

TEST(CpuDiffHarness, NativeRunsCompatibilityModeOnlyInstructions) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case daa = with_code({0x27});  // daa: invalid in 64-bit mode
  daa.gpr[EAX] = 0x0f;
  daa.eflags = fl::FIXED1 | fl::IF;
  Case pusha = with_code({0x60});  // pushad
  pusha.gpr[ESP] = 64;
  pusha.gpr_rel = 1u << ESP;
  auto out = run_one_side(native_runner(), {daa, pusha}, 64);
  EXPECT_EQ(out[0].gpr[EAX] & 0xff, 0x15u);
  EXPECT_TRUE(out[0].eflags & fl::AF);
  EXPECT_EQ(out[1].gpr[ESP] & 0xfff, 0x60u);  // window 1 starts at MEM + 64 (page-aligned); ESP 64 - 32
  uint32_t win1 = 0;
  std::vector<std::vector<uint8_t>> wins;
  run_one_side(native_runner(), {daa, pusha}, 64, &wins);
  ASSERT_EQ(wins.size(), 2u);
  // PUSHAD stores EDI at the lowest address and EAX at the highest (SDM PUSHA).
  std::memcpy(&win1, &wins[1][32], 4);
  EXPECT_EQ(win1, pusha.gpr[EDI]);
  std::memcpy(&win1, &wins[1][60], 4);
  EXPECT_EQ(win1, pusha.gpr[EAX]);
}

TEST(CpuDiffHarness, NativeMemoryOperandIsRelocated) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case c = with_code({});
  Asm a;
  a.op({0x01}).mem(EAX, 8);  // add [window+8], eax
  a.into(c);
  c.mem = std::vector<uint8_t>(16, 0);
  c.mem[8] = 5;
  c.gpr[EAX] = 0x100;
  std::vector<std::vector<uint8_t>> wins;
  run_one_side(native_runner(), {c}, 16, &wins);
  uint32_t v;
  std::memcpy(&v, &wins[0][8], 4);
  EXPECT_EQ(v, 0x105u);
}

TEST(CpuDiffHarness, NativeDivideErrorIsCaughtAndTheBatchResumes) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case div0 = with_code({0xf7, 0xf1});  // div ecx
  div0.gpr[ECX] = 0;
  Case next = with_code({0x40});  // inc eax
  next.gpr[EAX] = 41;
  auto out = run_one_side(native_runner(), {div0, next, div0, next}, 0);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].fault, 0);
  EXPECT_NE(out[0].fault_eip, 0u);
  EXPECT_EQ(out[1].fault, -1);
  EXPECT_EQ(out[1].gpr[EAX], 42u);
  EXPECT_EQ(out[2].fault, 0);
  EXPECT_EQ(out[3].gpr[EAX], 42u);
}

TEST(CpuDiffHarness, EngineRegistersRoundTrip) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case c = with_code({0x40});  // inc eax
  c.eflags = fl::FIXED1 | fl::IF | fl::CF | fl::DF;
  auto out = run_one_side(engine_runner(), {c, c}, 0);
  ASSERT_EQ(out.size(), 2u);
  for (const Outcome& o : out) {
    EXPECT_EQ(o.note, "");
    EXPECT_EQ(o.fault, -1);
    EXPECT_EQ(o.gpr[EAX], c.gpr[EAX] + 1);
    for (unsigned r = 1; r < 8; ++r)
      if (r != ESP) {
        EXPECT_EQ(o.gpr[r], c.gpr[r]) << r;
      }
    EXPECT_EQ(o.eflags & (fl::CF | fl::DF), fl::CF | fl::DF);  // INC keeps CF
  }
}

TEST(CpuDiffHarness, EngineExceptionIsReportedWithVectorAndEip) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case ud = with_code({0x0f, 0x0b});  // ud2
  Case next = with_code({0x40});      // inc eax
  auto out = run_one_side(engine_runner(), {next, ud, next}, 0);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].fault, 6);  // #UD
  EXPECT_EQ(out[2].gpr[EAX], next.gpr[EAX] + 1);
  auto nat = run_one_side(native_runner(), {next, ud, next}, 0);
  EXPECT_EQ(nat[1].fault, 6);
  EXPECT_EQ(nat[1].fault_eip, out[1].fault_eip);
}

// Runs natively, then flips chosen EFLAGS bits / a register in the outcomes.
class DoctoredRunner final : public Runner {
 public:
  DoctoredRunner(uint32_t flip_flags, uint32_t flip_ecx, uint8_t flip_mem = 0)
      : m_flags(flip_flags), m_ecx(flip_ecx), m_mem(flip_mem) {}
  const char* name() const override { return "doctored"; }
  void run(const BatchImage& img, std::vector<Outcome>& out, std::vector<uint8_t>& windows) override {
    native_runner().run(img, out, windows);
    for (Outcome& o : out) o.eflags ^= m_flags, o.gpr[ECX] ^= m_ecx;
    if (!windows.empty()) windows.back() ^= m_mem;
  }

 private:
  uint32_t m_flags, m_ecx;
  uint8_t m_mem;
};

TEST(CpuDiffHarness, ComparisonFindsPlantedDifferences) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case c = with_code({0x0f, 0xaf, 0xc3});  // imul eax, ebx: SF ZF AF PF undefined
  c.defined_flags = fl::CF | fl::OF;
  FamilyResult same = run_cases("harness.same", {c}, 0, native_runner(), native_runner());
  EXPECT_EQ(same.defined_mismatches, 0u) << same.defined_report;
  EXPECT_EQ(same.undefined_compared, 1u);

  DoctoredRunner cf(fl::CF, 0), zf(fl::ZF, 0), ecx(0, 1);
  FamilyResult r = run_cases("harness.cf", {c}, 0, native_runner(), cf);
  EXPECT_EQ(r.defined_mismatches, 1u);
  EXPECT_EQ(r.undefined_mismatches, 0u);
  EXPECT_NE(r.defined_report.find("flags CF"), std::string::npos) << r.defined_report;
  EXPECT_NE(r.defined_report.find("imul"), std::string::npos) << r.defined_report;

  r = run_cases("harness.zf", {c}, 0, native_runner(), zf);
  EXPECT_EQ(r.defined_mismatches, 0u);
  EXPECT_EQ(r.undefined_mismatches, 1u);
  EXPECT_NE(r.undefined_report.find("undefined flags ZF"), std::string::npos) << r.undefined_report;

  r = run_cases("harness.ecx", {c}, 0, native_runner(), ecx);
  EXPECT_EQ(r.defined_mismatches, 1u);
  EXPECT_NE(r.defined_report.find("ecx"), std::string::npos) << r.defined_report;

  EXPECT_EQ(flag_names(fl::CF | fl::OF), "CF OF");
}

TEST(CpuDiffHarness, ComparisonFindsAMemoryDifference) {
  CPU_DIFF_REQUIRE_NATIVE();
  Case c = with_code({});
  Asm a;
  a.op({0x01}).mem(EAX, 0);  // add [window], eax
  a.into(c);
  DoctoredRunner mem(0, 0, 0x01);
  FamilyResult r = run_cases("harness.mem", {c}, 16, native_runner(), mem);
  EXPECT_EQ(r.defined_mismatches, 1u);
  EXPECT_NE(r.defined_report.find("memory +0xf"), std::string::npos) << r.defined_report;
  r = run_cases("harness.mem_same", {c}, 16, native_runner(), native_runner());
  EXPECT_EQ(r.defined_mismatches, 0u) << r.defined_report;
}

TEST(CpuDiffHarness, BatchesSplitAndMapEipsToCases) {
  CPU_DIFF_REQUIRE_NATIVE();
  // More cases than one batch holds: every one must still run.
  std::vector<Case> many(layout::MAX_CASES + 10, with_code({0x40}));  // inc eax
  for (size_t i = 0; i < many.size(); ++i) many[i].gpr[EAX] = uint32_t(i);
  auto out = run_one_side(native_runner(), many, 0);
  ASSERT_EQ(out.size(), many.size());
  for (size_t i = 0; i < many.size(); i += 997) EXPECT_EQ(out[i].gpr[EAX], uint32_t(i + 1));
}

}  // namespace
}  // namespace anykvm::difftest
