// Case runner for the x87 differential tests (x87_harness.h): builds the data
// block of each case, runs it on both sides and reports the first mismatches
// with the inputs that produced them.
#pragma once
#include <algorithm>
#include <utility>

#include "x87_harness.h"

namespace anykvm::test::x87 {

struct Case {
  uint16_t fcw = 0x037f;
  F80 a{}, b{};
  std::array<uint8_t, 16> mem{};
  uint32_t flags = 2;
  std::vector<uint8_t> aux;  // placed at D_AUX
  std::vector<uint8_t> big;  // placed at D_BIG
};

struct Compare {
  bool cc = false;                                    // D_CC (setcc after FCOMI-style compares)
  bool mem = false;                                   // D_MEM (store destinations)
  std::vector<std::pair<unsigned, unsigned>> ranges;  // more (offset, length) to compare
  bool save = true;                                   // the FNSAVE image at D_SAVE
};

inline std::vector<uint16_t> all_fcws(bool with_unmasked = true) {
  std::vector<uint16_t> r;
  const uint16_t masks_list[] = {0x3f, 0x00, 0x20};
  for (uint16_t masks : masks_list) {
    if (!with_unmasked && masks != 0x3f) continue;
    for (uint16_t pc : {0, 2, 3})
      for (uint16_t rc = 0; rc < 4; ++rc) r.push_back(uint16_t(0x40 | masks | (pc << 8) | (rc << 10)));
  }
  return r;
}

inline Block make_block(const Case& c) {
  Block b{};
  std::memset(b.data(), 0xcc, b.size());
  std::memcpy(&b[D_FCW], &c.fcw, 2);
  uint64_t fl = c.flags;
  std::memcpy(&b[D_FLAGS], &fl, 8);
  put80(b, D_A, c.a);
  put80(b, D_B, c.b);
  std::memcpy(&b[D_MEM], c.mem.data(), 16);
  if (!c.aux.empty()) std::memcpy(&b[D_AUX], c.aux.data(), std::min<size_t>(c.aux.size(), D_BIG - D_AUX));
  if (!c.big.empty()) std::memcpy(&b[D_BIG], c.big.data(), std::min<size_t>(c.big.size(), 512));
  return b;
}

inline std::string describe(const Case& c) {
  char t[160];
  std::snprintf(t, sizeof t, "fcw=%04x a=%04x:%016llx b=%04x:%016llx mem=", c.fcw, c.a.se,
                (unsigned long long)c.a.m, c.b.se, (unsigned long long)c.b.m);
  return t + hex(c.mem.data(), 16) + (c.aux.empty() ? "" : " aux=" + hex(c.aux.data(), c.aux.size())) +
         (c.big.empty() ? "" : " big=" + hex(c.big.data(), std::min<size_t>(c.big.size(), 112)));
}

// Runs every case on both sides; returns the number of mismatches and fills
// `report` with the first few.
inline size_t run_diff(const std::vector<uint8_t>& body, const std::vector<Case>& cases, Compare cmp,
                       std::string& report, uint64_t cr0_extra = 0, uint64_t cr4 = 0) {
  Engine eng(body, cr0_extra, cr4);
  size_t bad = 0;
  for (const Case& c : cases) {
    Block n = make_block(c), e = make_block(c);
    Native::get().run(body, n);
    std::string why;
    bool ok = eng.run(e, &why);
    std::string diff;
    if (!ok) diff += " engine: " + why;
    auto cmp_range = [&](const char* what, unsigned off, unsigned len) {
      if (std::memcmp(&n[off], &e[off], len) != 0)
        diff += std::string(" ") + what + " native=" + hex(&n[off], len) + " engine=" + hex(&e[off], len);
    };
    if (cmp.save) cmp_range("fcw/fsw/ftw", D_SAVE, 12);
    // Registers tagged empty (on both sides: the FTW is compared above) keep
    // stale contents that depend on each side's history; skip them.
    uint16_t fsw, ftw;
    std::memcpy(&fsw, &n[D_SAVE + 4], 2);
    std::memcpy(&ftw, &n[D_SAVE + 8], 2);
    for (unsigned i = 0; i < 8 && cmp.save; ++i) {
      const unsigned phys = ((fsw >> 11) + i) & 7;
      if (((ftw >> (2 * phys)) & 3) == 3) continue;
      const std::string what = "st" + std::to_string(i);
      cmp_range(what.c_str(), D_SAVE + 28 + 10 * i, 10);
    }
    if (cmp.cc) cmp_range("zf/pf/cf", D_CC, 3);
    if (cmp.mem) cmp_range("mem", D_MEM, 16);
    for (auto [off, len] : cmp.ranges) {
      const std::string what = "@" + std::to_string(off);
      cmp_range(what.c_str(), off, len);
    }
    if (!diff.empty()) {
      if (++bad <= 6) report += describe(c) + ":" + diff + "\n";
    }
  }
  return bad;
}

#define X87_REQUIRE_NATIVE() \
  if (!::anykvm::test::x87::Native::get().available()) GTEST_SKIP() << "no RWX page for native execution"

}  // namespace anykvm::test::x87
