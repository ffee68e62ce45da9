// XSAVE/XRSTOR for the x87 and SSE components against the host CPU: one code
// body (memory operands [ebx+disp32]) runs natively in this 64-bit process and
// in the engine's flat 32-bit guest (XCR0 = x87 | SSE, CR4.OSXSAVE). Compared:
// the whole XSAVE area but FOP/FIP/FDP (the host is in 64-bit mode), MXCSR_MASK
// (the host's differs) and XMM8-15 (saved only in 64-bit mode). That covers
// which bytes XSAVE writes for each requested-feature bitmap, the header rules
// (XSTATE_BV bits outside RFBM kept, no other header byte written) and
// XRSTOR's init semantics (a component not in XSTATE_BV is initialised, MXCSR
// is loaded whenever RFBM[1] is set).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../cpu_exec/harness.h"
#include "cpu/soft/fpu/fpu.h"

namespace anykvm::test {
namespace {

struct alignas(64) Block : std::array<uint8_t, 0x600> {};
constexpr uint32_t A1 = 0x000, A2 = 0x280, V = 0x500;  // two XSAVE areas, operand values
constexpr unsigned k_area = 576;

bool host_has_xsave() {
  uint32_t a, b, c, d;
  asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
  if (!(c & (1u << 27))) return false;  // OSXSAVE: the host OS enabled XSAVE
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 3) == 3;
}

// op with ModRM.reg = reg and operand [ebx+disp32].
std::vector<uint8_t> m(std::vector<uint8_t> op, unsigned reg, uint32_t disp) {
  op.push_back(uint8_t(0x83 | (reg << 3)));
  for (int i = 0; i < 4; ++i) op.push_back(uint8_t(disp >> (8 * i)));
  return op;
}
std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> r;
  for (auto& p : parts) r.insert(r.end(), p.begin(), p.end());
  return r;
}
std::vector<uint8_t> mov_eax(uint32_t v) { return {0xb8, uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)}; }
std::vector<uint8_t> xsave(uint32_t rfbm, uint32_t at) {
  return cat({mov_eax(rfbm), {0x31, 0xd2}, m({0x0f, 0xae}, 4, at)});  // mov eax; xor edx, edx; xsave
}
std::vector<uint8_t> xrstor(uint32_t rfbm, uint32_t at) {
  return cat({mov_eax(rfbm), {0x31, 0xd2}, m({0x0f, 0xae}, 5, at)});
}

// A state that is not initial in either component: two x87 values and a sum,
// a non-default MXCSR, XMM0 and XMM3.
std::vector<uint8_t> make_state() {
  return cat({{0xdb, 0xe3},                   // fninit
              {0x0f, 0x57, 0xc9, 0x0f, 0x57, 0xd2, 0x0f, 0x57, 0xe4,   // xorps xmm1, xmm2, xmm4,
               0x0f, 0x57, 0xed, 0x0f, 0x57, 0xf6, 0x0f, 0x57, 0xff},  // xmm5, xmm6, xmm7
              m({0xdb}, 5, V), m({0xdb}, 5, V + 0x10),  // fld tword x2
              {0xd9, 0xeb, 0xd8, 0xc1},       // fldpi; fadd st0, st1
              m({0x0f, 0xae}, 2, V + 0x20),   // ldmxcsr
              m({0x0f, 0x10}, 0, V + 0x30),   // movups xmm0
              m({0x0f, 0x10}, 3, V + 0x40),   // movups xmm3
              {0x0f, 0x58, 0xd8}});           // addps xmm3, xmm0
}

void fill_values(Block& b, std::mt19937_64& g) {
  const uint64_t m1 = g() | (1ull << 63), m2 = g() | (1ull << 63);
  std::memcpy(&b[V], &m1, 8);
  b[V + 8] = 0x05;
  b[V + 9] = 0x40;
  std::memcpy(&b[V + 0x10], &m2, 8);
  b[V + 0x18] = 0xfe;
  b[V + 0x19] = 0xbf;
  const uint32_t mx = 0x3f80 | (uint32_t(g()) & 0x40);  // round down, maybe DAZ
  std::memcpy(&b[V + 0x20], &mx, 4);
  const float f[8] = {1.5f, -2.25f, 1e10f, 3.0f, 0.1f, 7.0f, -0.0f, 1e-3f};
  std::memcpy(&b[V + 0x30], f, 32);
}

class Native {
 public:
  Native() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m_page = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  ~Native() {
    if (m_page) munmap(m_page, 4096);
  }
  void run(const std::vector<uint8_t>& body, Block& data) {
    std::vector<uint8_t> code = {0x53, 0x48, 0x89, 0xfb};  // push rbx; mov rbx, rdi
    code.insert(code.end(), body.begin(), body.end());
    code.insert(code.end(), {0x5b, 0xc3});  // pop rbx; ret
    ASSERT_LT(code.size(), 4096u);
    std::memcpy(m_page, code.data(), code.size());
    auto fn = reinterpret_cast<void (*)(void*)>(m_page);
    alignas(16) uint8_t host[512];
    asm volatile("fxsave %0" : "=m"(host)::"memory");
    fn(data.data());
    asm volatile("fxrstor %0" ::"m"(host) : "memory");
  }

 private:
  uint8_t* m_page = nullptr;
};

// The engine side: flat 32-bit, CR4.OSFXSR | OSXSAVE, XCR0 = 3 (the guest's
// CPUID is the supported table, which allows it).
bool engine_run(const std::vector<uint8_t>& body, Block& data, std::string& why) {
  constexpr uint32_t k_code = 0x1000, k_data = 0x10000;
  Guest g;
  std::vector<uint8_t> code = body;
  code.push_back(0xf4);
  g.load(k_code, code);
  g.flat32(k_code);
  g.vcpu->set_cpuid(cpu::soft_supported_cpuid());
  cpu::SpecialRegs s = g.vcpu->get_sregs();
  s.cr4 = (1u << 9) | (1u << 18);
  EXPECT_TRUE(g.vcpu->set_sregs(s));
  EXPECT_TRUE(g.vcpu->set_xcr0(3));
  std::memcpy(&g.ram[k_data], data.data(), data.size());
  cpu::Regs r = g.regs();
  r.gpr[3] = k_data;
  g.vcpu->set_regs(r);
  auto e = g.run();
  std::memcpy(data.data(), &g.ram[k_data], data.size());
  if (e.reason != cpu::ExitReason::Hlt || g.regs().rip != k_code + code.size()) {
    why = "guest stopped early: exit " + std::to_string(int(e.reason)) + " rip " + std::to_string(g.regs().rip);
    return false;
  }
  return true;
}

// Bytes of an XSAVE area that must agree with the host.
bool compared(unsigned off) {
  if (off >= 6 && off < 24) return false;    // FOP, FIP/FCS, FDP/FDS (64-bit host)
  if (off >= 28 && off < 32) return false;   // MXCSR_MASK
  if (off >= 288 && off < 416) return false;  // XMM8-15 (64-bit host only)
  return true;
}

std::string diff_area(const Block& host, const Block& eng, uint32_t at) {
  std::string d;
  for (unsigned k = 0; k < k_area; ++k) {
    if (!compared(k) || host[at + k] == eng[at + k]) continue;
    char t[64];
    std::snprintf(t, sizeof t, " [%u] host %02x engine %02x", k, host[at + k], eng[at + k]);
    d += t;
    if (d.size() > 400) break;
  }
  return d;
}

#define REQUIRE_HOST_XSAVE() \
  if (!host_has_xsave()) GTEST_SKIP() << "host has no XSAVE enabled for x87|SSE"

TEST(XsaveDiff, XsaveWritesWhatRfbmSelects) {
  REQUIRE_HOST_XSAVE();
  Native native;
  std::mt19937_64 g(0x5a7e);
  unsigned n = 0;
  for (uint32_t rfbm : {0u, 1u, 2u, 3u})
    for (uint8_t fill : {0x00, 0xa5, 0xff}) {
      Block data{};
      fill_values(data, g);
      std::memset(&data[A1], fill, k_area);
      // XSTATE_BV: bits outside RFBM must survive; x87/SSE bits get XINUSE.
      const uint64_t bv = 0xfffffff0fffffff0ull | (fill & 3);
      std::memcpy(&data[A1 + 512], &bv, 8);
      Block host = data, eng = data;
      const auto body = cat({make_state(), xsave(rfbm, A1)});
      native.run(body, host);
      std::string why;
      ASSERT_TRUE(engine_run(body, eng, why)) << why;
      EXPECT_EQ(diff_area(host, eng, A1), "") << "rfbm " << rfbm << " fill " << int(fill);
      ++n;
    }
  EXPECT_EQ(n, 12u);
}

// A legacy region with valid contents (MXCSR without reserved bits).
void make_image(Block& b, uint32_t at, std::mt19937_64& g, uint16_t fsw, uint8_t ftwx) {
  for (unsigned k = 0; k < 512; k += 8) {
    const uint64_t v = g();
    std::memcpy(&b[at + k], &v, 8);
  }
  const uint16_t fcw = 0x037f;
  std::memcpy(&b[at], &fcw, 2);
  std::memcpy(&b[at + 2], &fsw, 2);
  b[at + 4] = ftwx;
  b[at + 5] = 0;
  const uint16_t fop = 0;
  std::memcpy(&b[at + 6], &fop, 2);
  const uint32_t mx = 0x1f80 ^ (uint32_t(g()) & 0x7f3f);
  std::memcpy(&b[at + 24], &mx, 4);
  std::memset(&b[at + 512], 0, 64);
}

TEST(XsaveDiff, XrstorLoadsOrInitialises) {
  REQUIRE_HOST_XSAVE();
  Native native;
  std::mt19937_64 g(0xc0ffee);
  std::string report;
  unsigned n = 0, bv_diffs = 0;
  for (uint64_t bv = 0; bv < 4; ++bv)
    for (uint32_t rfbm : {0u, 1u, 2u, 3u})
      for (uint16_t fsw : {0x0000, 0x3800, 0x4704}) {
        Block data{};
        fill_values(data, g);
        make_image(data, A1, g, fsw, uint8_t(g()));
        std::memcpy(&data[A1 + 512], &bv, 8);
        Block host = data, eng = data;
        // A non-initial state first, so "not restored" and "initialised" differ.
        const auto body = cat({make_state(), xrstor(rfbm, A1), xsave(3, A2)});
        native.run(body, host);
        std::string why;
        ASSERT_TRUE(engine_run(body, eng, why)) << why;
        // XSTATE_BV after an initialisation is implementation-dependent (13.6:
        // XINUSE may stay 1); everything else must match.
        uint64_t hb, eb;
        std::memcpy(&hb, &host[A2 + 512], 8);
        std::memcpy(&eb, &eng[A2 + 512], 8);
        const uint64_t initialised = rfbm & ~bv;
        if ((hb ^ eb) & ~initialised) report += " XSTATE_BV host " + std::to_string(hb) + " engine " + std::to_string(eb);
        if ((hb ^ eb) & initialised) ++bv_diffs;
        std::memcpy(&host[A2 + 512], &eb, 8);
        const std::string d = diff_area(host, eng, A2);
        if (!d.empty())
          report += "\nbv " + std::to_string(bv) + " rfbm " + std::to_string(rfbm) + " fsw " + std::to_string(fsw) + d;
        ++n;
      }
  EXPECT_EQ(report, "");
  EXPECT_EQ(n, 48u);
  RecordProperty("xstate_bv_implementation_differences", int(bv_diffs));
}

}  // namespace
}  // namespace anykvm::test
