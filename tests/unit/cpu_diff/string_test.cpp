// Differential tests of the string instructions MOVS, STOS, LODS, SCAS, CMPS
// (8/16/32-bit elements) without prefix, with REP, and for SCAS/CMPS with
// REPE/REPNE (SDM "REP/REPE/REPZ/REPNE/REPNZ": termination on ECX = 0 or on
// the ZF condition), with DF = 0 and DF = 1, counts 0, 1, 2 and random, source
// segment overrides (CS/SS/ES/DS: all flat here), and memory patterns in which
// the compares stop at a random element. 32-bit addressing only: 16-bit forms
// would address below 64 KiB, which a Linux process cannot map.
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t MOVSB = 0xa4, CMPSB = 0xa6, STOSB = 0xaa, LODSB = 0xac, SCASB = 0xae;
constexpr uint8_t SEG_ES = 0x26, SEG_CS = 0x2e, SEG_SS = 0x36, SEG_DS = 0x3e;
constexpr uint32_t STR_WINDOW = 1024;
constexpr uint32_t SRC_AT = 300, DST_AT = 700;  // room for 40 dwords in either direction
constexpr uint32_t k_max_count = 40;

enum class Prefix : uint8_t { None, Rep, Repne };

void gen_string(std::vector<Case>& out, Rng& rng, uint8_t op8) {
  const bool compares = op8 == CMPSB || op8 == SCASB;
  const bool reads_src = op8 == MOVSB || op8 == LODSB || op8 == CMPSB;
  for (unsigned bits : {8u, 16u, 32u})
    for (Prefix p : {Prefix::None, Prefix::Rep, Prefix::Repne}) {
      if (p == Prefix::Repne && !compares) continue;  // SDM: REPNE is for SCAS/CMPS only
      for (int i = 0; i < 120; ++i) {
        Case c = random_case(rng, true);
        c.eflags = (c.eflags & ~fl::DF) | (i & 1 ? fl::DF : 0);
        uint32_t count = i < 8 ? uint32_t(i / 2) : rng.below(k_max_count + 1);
        c.gpr[ECX] = count | (p == Prefix::None ? rng.u32() & 0xffff0000u : 0);
        c.gpr[ESI] = SRC_AT + rng.below(8);
        c.gpr[EDI] = DST_AT + rng.below(8);
        c.gpr_rel = uint8_t(1u << ESI | 1u << EDI);
        // Memory: destination a copy of the source (or of the accumulator) with
        // one element changed somewhere, so REPE/REPNE stop at varying points.
        c.mem.resize(STR_WINDOW);
        for (auto& b : c.mem) b = uint8_t(rng.below(4));
        const unsigned esz = bits / 8;
        for (uint32_t a = 0; a + (DST_AT - SRC_AT) < STR_WINDOW; ++a) c.mem[a + (DST_AT - SRC_AT)] = c.mem[a];
        if (op8 == SCASB) {
          for (uint32_t k = 0; k < STR_WINDOW; ++k) c.mem[k] = uint8_t(c.gpr[EAX] >> (8 * (k % esz)));
          if (rng.coin()) c.mem[rng.below(STR_WINDOW)] ^= 1;
        } else if (rng.coin()) {
          c.mem[DST_AT - 200 + rng.below(400)] ^= 0x80;
        }
        Asm x;
        if (reads_src && rng.below(4) == 0) x.op({std::array<uint8_t, 4>{SEG_ES, SEG_CS, SEG_SS, SEG_DS}[rng.below(4)]});
        if (p == Prefix::Rep) x.op({REP});
        if (p == Prefix::Repne) x.op({REPNE});
        x.opc(bits, op8, uint8_t(op8 + 1));
        x.into(c);
        if (!compares) c.defined_flags = fl::STATUS;  // MOVS/STOS/LODS change no flags
        out.push_back(std::move(c));
      }
    }
}

CPU_DIFF_FAMILY(String, Movs, STR_WINDOW, [](auto& v, Rng& r) { gen_string(v, r, MOVSB); })
CPU_DIFF_FAMILY(String, Stos, STR_WINDOW, [](auto& v, Rng& r) { gen_string(v, r, STOSB); })
CPU_DIFF_FAMILY(String, Lods, STR_WINDOW, [](auto& v, Rng& r) { gen_string(v, r, LODSB); })
CPU_DIFF_FAMILY(String, Scas, STR_WINDOW, [](auto& v, Rng& r) { gen_string(v, r, SCASB); })
CPU_DIFF_FAMILY(String, Cmps, STR_WINDOW, [](auto& v, Rng& r) { gen_string(v, r, CMPSB); })

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// REP MOVS/STOS/CMPS whose source and destination overlap (the destination a
// few bytes after or before the source, unaligned too): the SDM defines the
// result element by element, so a block copy in the engine would show here.
void gen_string_overlap(std::vector<Case>& out, Rng& rng) {
  constexpr uint32_t WINDOW = 512, AT = 200;
  for (uint8_t op8 : {uint8_t(0xa4), uint8_t(0xa6), uint8_t(0xaa)})
    for (unsigned bits : {8u, 16u, 32u})
      for (int i = 0; i < 150; ++i) {
        Case c = random_case(rng, true);
        c.eflags = (c.eflags & ~fl::DF) | (i & 1 ? fl::DF : 0);
        c.gpr[ECX] = rng.below(48);
        c.gpr[ESI] = AT + rng.below(8);
        c.gpr[EDI] = c.gpr[ESI] + rng.below(17) - 8;
        c.gpr_rel = uint8_t(1u << ESI | 1u << EDI);
        c.mem.resize(WINDOW);
        for (auto& b : c.mem) b = uint8_t(rng.below(3));
        Asm x;
        x.op({i % 3 == 2 && op8 == 0xa6 ? REPNE : REP}).opc(bits, op8, uint8_t(op8 + 1));
        x.into(c);
        if (op8 != 0xa6) c.defined_flags = fl::STATUS;
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY(String, Overlapping, 512, gen_string_overlap)

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// Long REP runs (counts around and past the engine's 4096-element slice, after
// which it yields and resumes the same instruction): MOVS, STOS, and REPE/REPNE
// CMPS/SCAS whose mismatch lies before, at or after a slice boundary.
void gen_long_rep(std::vector<Case>& out, Rng& rng) {
  constexpr uint32_t WINDOW = 20480, SRC_AT = 16, DST_AT = 10240, SPAN = 10000;
  static const uint32_t counts[] = {4095, 4096, 4097, 5000, 8191, 8192, 8193, 9000};
  for (uint8_t op8 : {uint8_t(0xa4), uint8_t(0xaa), uint8_t(0xa6), uint8_t(0xae)})
    for (unsigned bits : {8u, 16u})
      for (int i = 0; i < 12; ++i) {
        const bool compares = op8 == 0xa6 || op8 == 0xae;
        const unsigned esz = bits / 8;
        uint32_t count = counts[rng.below(8)];
        if (count * esz > SPAN) count = SPAN / esz;
        Case c = random_case(rng);
        c.gpr[ECX] = count;
        c.gpr[ESI] = SRC_AT;
        c.gpr[EDI] = DST_AT;
        c.gpr_rel = uint8_t(1u << ESI | 1u << EDI);
        c.gpr[EAX] = 0x5a5a5a5a;  // SCAS: equal to the pattern
        c.mem.assign(WINDOW, 0x5a);
        for (uint32_t k = 0; k < SPAN; ++k) c.mem[SRC_AT + k] = uint8_t(0x5a ^ (rng.below(64) == 0 && op8 == 0xa4 ? 0xff : 0));
        const bool repne = compares && rng.coin();
        if (compares) {
          // REPE: one differing element somewhere (or none); REPNE: every element differs but one.
          const uint32_t stop = std::array<uint32_t, 6>{4095, 4096, 4097, 100, 8193, count + 5}[rng.below(6)];
          for (uint32_t k = 0; k < count * esz + 8 && DST_AT + k < WINDOW; ++k) {
            bool at_stop = k / esz == stop;
            c.mem[DST_AT + k] = uint8_t(repne != at_stop ? 0xa5 : 0x5a);
          }
        }
        Asm x;
        x.op({repne ? REPNE : REP}).opc(bits, op8, uint8_t(op8 + 1));
        x.into(c);
        if (!compares) c.defined_flags = fl::STATUS;
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY(String, LongRep, 20480, gen_long_rep)

}  // namespace
}  // namespace anykvm::difftest
