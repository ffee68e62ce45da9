// Batch layout (one frame per case), the comparison of the two sides, and the
// failure reports. A frame is plain 32-bit code, identical on both sides:
//   mov esp, HSTACK; push FLAGS; popfd; mov r, IN (7 regs); mov esp, IN.esp
//   <the case's code>
//   mov [OUT+4r], r (8 regs); mov esp, HSTACK; pushfd; pop [OUT+32]
// MOV does not touch flags, so the flags seen by the code are exactly FLAGS and
// the flags stored are exactly what the code left.
#include "diff.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "engine.h"
#include "native.h"
#include "x86/decode/decoder.h"
#include "x86/decode/disasm.h"

namespace anykvm::difftest {
namespace {

constexpr size_t k_reports_in_full = 8;
constexpr unsigned k_memory_diffs_shown = 8;
constexpr size_t k_code_reserve = 256;  // room for one more frame and the final jump
const char* const k_reg_names[8] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};

struct Emit {
  std::vector<uint8_t>& b;
  void u8(uint8_t v) { b.push_back(v); }
  void d32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
  }
};

// The window's offset from the SEL16 segment base (16-bit addressing cases).
uint32_t win16(uint32_t win, uint32_t base) { return win - (base + layout::SEG16_BASE); }

std::vector<uint8_t> relocated(const Case& c, uint32_t win, uint32_t base) {
  std::vector<uint8_t> code = c.code;
  for (uint8_t off : c.relocs) {
    uint32_t v;
    std::memcpy(&v, &code.at(off), 4);
    v += win;
    std::memcpy(&code[off], &v, 4);
  }
  for (uint8_t off : c.relocs16) {
    uint16_t v;
    std::memcpy(&v, &code.at(off), 2);
    v = uint16_t(v + win16(win, base));
    std::memcpy(&code[off], &v, 2);
  }
  return code;
}

uint32_t input_reg(const Case& c, unsigned r, uint32_t win, uint32_t base) {
  if (r == ESP && !(c.gpr_rel & (1u << ESP))) return base + layout::SCRATCH_STACK;
  return c.gpr[r] + ((c.gpr_rel >> r) & 1 ? win : 0) + ((c.gpr_rel16 >> r) & 1 ? win16(win, base) : 0);
}

// Builds cases [first, ...) into img until a limit is reached; returns the count.
size_t build_batch(const std::vector<Case>& cases, size_t first, uint32_t window, uint32_t base, BatchImage& img) {
  img = BatchImage{};
  img.base = base;
  img.window = window;
  size_t cap = layout::MAX_CASES;
  if (window) cap = std::min<size_t>(cap, layout::MEM_SIZE / window);
  Emit e{img.code};
  const uint32_t code_base = base + layout::CODE;
  const uint32_t hstack = base + layout::HSTACK_TOP;
  size_t i = first;
  for (; i < cases.size() && img.n < cap && img.code.size() + k_code_reserve + cases[i].code.size() < layout::CODE_SIZE;
       ++i, ++img.n) {
    const Case& c = cases[i];
    const uint32_t win = base + layout::MEM + uint32_t(img.n) * window;
    if (c.seg16 && img.n > 0 && win16(win, base) + window > layout::SEG16_SPAN) break;  // next batch
    const uint32_t out = img.out_addr(img.n);
    img.frame.push_back(code_base + uint32_t(img.code.size()));
    e.u8(0xbc), e.d32(hstack);         // mov esp, HSTACK
    e.u8(0x68), e.d32(c.eflags);       // push FLAGS
    e.u8(0x9d);                        // popfd
    for (unsigned r = 0; r < 8; ++r)
      if (r != ESP) e.u8(uint8_t(0xb8 + r)), e.d32(input_reg(c, r, win, base));  // mov r, imm32
    e.u8(0xbc), e.d32(input_reg(c, ESP, win, base));  // mov esp, imm32
    img.insn.push_back(code_base + uint32_t(img.code.size()));
    std::vector<uint8_t> code = relocated(c, win, base);
    img.code.insert(img.code.end(), code.begin(), code.end());
    img.insn_end.push_back(code_base + uint32_t(img.code.size()));
    for (unsigned r = 0; r < 8; ++r) e.u8(0x89), e.u8(uint8_t(r << 3 | 5)), e.d32(out + 4 * r);  // mov [abs], r
    e.u8(0xbc), e.d32(hstack);            // mov esp, HSTACK
    e.u8(0x9c);                           // pushfd
    e.u8(0x8f), e.u8(0x05), e.d32(out + 32);  // pop dword [abs]
    if (window) {
      std::vector<uint8_t> m = c.mem;
      size_t have = m.size();
      m.resize(window);
      for (size_t k = have; k < window; ++k) m[k] = uint8_t(0x3c + 7 * k + 13 * i);  // a pattern, not zeros
      img.windows.insert(img.windows.end(), m.begin(), m.end());
    }
  }
  uint32_t jmp_at = code_base + uint32_t(img.code.size());
  e.u8(0xe9), e.d32(base + layout::EXIT - (jmp_at + 5));  // jmp EXIT
  return img.n;
}

std::string hex_bytes(const std::vector<uint8_t>& b) {
  std::string s;
  char t[4];
  for (uint8_t x : b) std::snprintf(t, sizeof t, "%02x ", x), s += t;
  if (!s.empty()) s.pop_back();
  return s;
}

std::string regs_text(const std::array<uint32_t, 8>& g, uint32_t eflags) {
  std::string s;
  char t[32];
  for (unsigned r = 0; r < 8; ++r) std::snprintf(t, sizeof t, "%s=%08x ", k_reg_names[r], g[r]), s += t;
  std::snprintf(t, sizeof t, "eflags=%08x [", eflags);
  return s + t + flag_names(eflags & fl::COMPARED) + "]";
}

std::string outcome_text(const Outcome& o) {
  if (!o.note.empty()) return o.note;
  if (o.fault >= 0) {
    char t[96];
    std::snprintf(t, sizeof t, "exception vector %d at eip %08x error code %#x; ", o.fault, o.fault_eip, o.fault_error);
    return t + regs_text(o.gpr, o.eflags);
  }
  return regs_text(o.gpr, o.eflags);
}

struct Verdict {
  std::string defined, undefined;  // what differs, empty if nothing
  bool has_undefined = false;
  bool faulted = false;
};

Verdict compare(const Case& c, const BatchImage& img, size_t i, const Outcome& n, const Outcome& e,
                const uint8_t* nwin, const uint8_t* ewin) {
  Verdict v;
  char t[96];
  if (!n.note.empty() || !e.note.empty()) {
    v.defined = !n.note.empty() ? "harness: " + n.note : e.note;
    return v;
  }
  if (n.fault >= 0 || e.fault >= 0) {
    if (n.fault != e.fault) {
      std::snprintf(t, sizeof t, "exception: native %d, engine %d", n.fault, e.fault);
      v.defined = t;
    } else if (n.fault_eip != e.fault_eip || n.fault_eip < img.insn[i] || n.fault_eip > img.insn_end[i]) {
      // Faults report the instruction, traps (INT3, INTO) the next one; in a
      // multi-instruction case that may be any instruction of the case.
      std::snprintf(t, sizeof t, "exception eip: native %08x, engine %08x", n.fault_eip, e.fault_eip);
      v.defined = t;
    } else if (n.fault_error != e.fault_error) {
      std::snprintf(t, sizeof t, "exception error code: native %#x, engine %#x", n.fault_error, e.fault_error);
      v.defined = t;
    }
    v.faulted = true;
    if (!v.defined.empty()) return v;
    // The same exception: registers, flags and memory at that point must agree
    // too (a fault leaves the instruction's state untouched, SDM vol. 3, 6.5).
  }
  const uint32_t win = img.base + layout::MEM + uint32_t(i) * img.window;
  for (unsigned r = 0; r < 8; ++r) {
    uint8_t bit = uint8_t(1u << r);
    bool undefined = (c.undefined_regs & bit) ||
                     ((c.defined_if_host_keeps & bit) && n.gpr[r] != input_reg(c, r, win, img.base));
    if (undefined) v.has_undefined = true;
    if (n.gpr[r] == e.gpr[r]) continue;
    std::snprintf(t, sizeof t, "%s ", k_reg_names[r]);
    (undefined ? v.undefined : v.defined) += t;
  }
  uint32_t undefined_flags = fl::STATUS & ~c.defined_flags;
  if (undefined_flags) v.has_undefined = true;
  uint32_t diff = (n.eflags ^ e.eflags) & fl::COMPARED;
  if (diff & ~undefined_flags) v.defined += "flags " + flag_names(diff & ~undefined_flags) + " ";
  if (diff & undefined_flags) v.undefined += "undefined flags " + flag_names(diff & undefined_flags) + " ";
  unsigned shown = 0;
  for (uint32_t k = 0; k < img.window; ++k) {
    if (nwin[k] == ewin[k]) continue;
    if (shown++ == k_memory_diffs_shown) {
      v.defined += "(more memory differs) ";
      break;
    }
    std::snprintf(t, sizeof t, "memory +%#x (native %02x, engine %02x) ", k, nwin[k], ewin[k]);
    v.defined += t;
  }
  return v;
}

std::string describe(const char* family, size_t index, const Case& c, const BatchImage& img, size_t i,
                     const Outcome& n, const Outcome& e, const std::string& what) {
  const uint32_t win = img.base + layout::MEM + uint32_t(i) * img.window;
  std::array<uint32_t, 8> in{};
  for (unsigned r = 0; r < 8; ++r) in[r] = input_reg(c, r, win, img.base);
  std::vector<uint8_t> code = relocated(c, win, img.base);
  std::string s;
  s += std::string("[") + family + "] case " + std::to_string(index) + ": " + disasm(code, img.insn[i]) + "  (" +
       hex_bytes(code) + ")\n";
  s += "    in:     " + regs_text(in, c.eflags);
  if (img.window) {
    char t[48];
    std::snprintf(t, sizeof t, "  window=%08x", win);
    s += t;
  }
  s += "\n    native: " + outcome_text(n) + "\n    engine: " + outcome_text(e) + "\n    differs: " + what + "\n";
  return s;
}

}  // namespace

int BatchImage::case_at(uint32_t eip) const {
  uint32_t end = base + layout::CODE + uint32_t(code.size());
  if (frame.empty() || eip < frame.front() || eip >= end) return -1;
  size_t lo = 0, hi = frame.size();
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    (frame[mid] <= eip ? lo : hi) = mid;
  }
  return int(lo);
}

uint64_t diff_seed() {
  static const uint64_t seed = [] {
    const char* s = std::getenv("ANYKVM_DIFF_SEED");
    uint64_t v = s ? std::strtoull(s, nullptr, 0) : 0x5eed2024;
    std::printf("[cpu_diff] random seed %#" PRIx64 " (set ANYKVM_DIFF_SEED to change)\n", v);
    return v;
  }();
  return seed;
}

Runner& native_runner() { return NativeRunner::get(); }
bool native_available() { return NativeRunner::get().available(); }
bool seg16_available() { return NativeRunner::get().seg16_available(); }
Runner& engine_runner() {
  static EngineRunner r(NativeRunner::get().base());
  return r;
}

std::string flag_names(uint32_t mask) {
  static const std::pair<uint32_t, const char*> names[] = {{fl::CF, "CF"}, {fl::PF, "PF"}, {fl::AF, "AF"},
                                                           {fl::ZF, "ZF"}, {fl::SF, "SF"}, {fl::TF, "TF"},
                                                           {fl::IF, "IF"}, {fl::DF, "DF"}, {fl::OF, "OF"}};
  std::string s;
  for (auto& [bit, name] : names)
    if (mask & bit) s += s.empty() ? name : std::string(" ") + name;
  return s;
}

std::string disasm(const std::vector<uint8_t>& code, uint32_t addr) {
  std::string s;
  size_t off = 0;
  while (off < code.size()) {
    x86::Insn in;
    if (x86::decode(code.data() + off, code.size() - off, 32, in) != x86::DecodeStatus::Ok || in.len == 0) {
      s += s.empty() ? "(undecodable)" : "; (undecodable)";
      break;
    }
    if (!s.empty()) s += "; ";
    s += x86::disassemble(in, addr + off);
    off += in.len;
  }
  return s;
}

std::vector<Outcome> run_one_side(Runner& r, const std::vector<Case>& cases, uint32_t window,
                                  std::vector<std::vector<uint8_t>>* windows_out) {
  std::vector<Outcome> all, part;
  std::vector<uint8_t> win;
  BatchImage img;
  for (size_t first = 0; first < cases.size();) {
    size_t n = build_batch(cases, first, window, NativeRunner::get().base(), img);
    r.run(img, part, win);
    all.insert(all.end(), part.begin(), part.end());
    if (windows_out)
      for (size_t i = 0; i < n; ++i) windows_out->emplace_back(win.begin() + i * window, win.begin() + (i + 1) * window);
    first += n;
  }
  return all;
}

FamilyResult run_cases(const char* name, const std::vector<Case>& cases, uint32_t window) {
  return run_cases(name, cases, window, native_runner(), engine_runner());
}

FamilyResult run_cases(const char* name, const std::vector<Case>& cases, uint32_t window, Runner& native,
                       Runner& engine) {
  FamilyResult res;
  res.cases = cases.size();
  std::vector<Outcome> nout, eout;
  std::vector<uint8_t> nwin, ewin;
  BatchImage img;
  for (size_t first = 0; first < cases.size();) {
    size_t n = build_batch(cases, first, window, NativeRunner::get().base(), img);
    native.run(img, nout, nwin);
    engine.run(img, eout, ewin);
    for (size_t i = 0; i < n; ++i) {
      const Case& c = cases[first + i];
      Verdict v = compare(c, img, i, nout[i], eout[i], nwin.data() + i * window, ewin.data() + i * window);
      if (v.faulted && v.defined.empty()) ++res.faults;
      if (!v.defined.empty() && res.defined_mismatches++ < k_reports_in_full)
        res.defined_report += describe(name, first + i, c, img, i, nout[i], eout[i], v.defined);
      if (v.has_undefined) ++res.undefined_compared;
      if (!v.undefined.empty() && res.undefined_mismatches++ < k_reports_in_full)
        res.undefined_report += describe(name, first + i, c, img, i, nout[i], eout[i], v.undefined);
    }
    first += n;
  }
  return res;
}

const FamilyResult& run_family(const FamilySpec& spec) {
  static std::map<std::string, std::unique_ptr<FamilyResult>> cache;
  auto& slot = cache[spec.name];
  if (!slot) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the name: families draw independent numbers
    for (const char* p = spec.name; *p; ++p) h = (h ^ uint8_t(*p)) * 1099511628211ull;
    Rng rng(diff_seed() ^ h);
    std::vector<Case> cases;
    spec.gen(cases, rng);
    bool seg16 = false;
    for (const Case& c : cases) seg16 = seg16 || c.seg16;
    if (seg16 && !seg16_available()) {  // natively these would fault: skip the family
      slot = std::make_unique<FamilyResult>();
      slot->cases = cases.size();
      slot->needs_seg16 = true;
      return *slot;
    }
    slot = std::make_unique<FamilyResult>(run_cases(spec.name, cases, spec.window));
    std::printf("[cpu_diff] %s: %zu cases (%zu raise the same exception on both sides), %zu defined mismatches, "
                "%zu undefined mismatches of %zu cases with undefined parts\n",
                spec.name, slot->cases, slot->faults, slot->defined_mismatches, slot->undefined_mismatches,
                slot->undefined_compared);
  }
  return *slot;
}

#define CPU_DIFF_SKIP_IF_NO_SEG16(r) \
  if ((r).needs_seg16) GTEST_SKIP() << "modify_ldt(2) refused the 16-bit addressing segment"

void expect_defined(const FamilySpec& spec) {
  CPU_DIFF_REQUIRE_NATIVE();
  const FamilyResult& r = run_family(spec);
  CPU_DIFF_SKIP_IF_NO_SEG16(r);
  ASSERT_GT(r.cases, 0u);
  EXPECT_EQ(r.defined_mismatches, 0u) << r.defined_mismatches << " of " << r.cases << " cases differ in defined "
                                      << "results (first ones below):\n"
                                      << r.defined_report;
}

void expect_undefined(const FamilySpec& spec) {
  CPU_DIFF_REQUIRE_NATIVE();
  const FamilyResult& r = run_family(spec);
  CPU_DIFF_SKIP_IF_NO_SEG16(r);
  if (r.undefined_compared == 0) GTEST_SKIP() << "no undefined flags or results in this family";
  EXPECT_EQ(r.undefined_mismatches, 0u) << r.undefined_mismatches << " of " << r.undefined_compared
                                        << " cases differ in flags/results the SDM leaves undefined "
                                        << "(the engine is meant to match the host):\n"
                                        << r.undefined_report;
}

}  // namespace anykvm::difftest
