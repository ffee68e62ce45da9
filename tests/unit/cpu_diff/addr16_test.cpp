// Differential tests of 16-bit addressing (67 prefix in 32-bit code; SDM vol.
// 2, table 2-1) with real memory accesses, through the SEL16 segment (GS, or
// ES reloaded by the case: see layout::SEG16_BASE): ALU/INC/DEC/NOT/NEG/shift/
// MOV/XCHG memory forms over every ModRM form ([BX+SI] ... [disp16], disp8 and
// disp16) with register values whose 16-bit sum wraps past FFFFh and random
// upper halves (which 16-bit addressing must ignore); string instructions with
// 16-bit SI/DI/CX (the upper halves of ESI/EDI/ECX must survive), XLAT with
// BX + AL wrapping, BT* with register bit offsets, MOV moffs16; and, on the
// same LDT, data segment loads and limit checks (expand-up with a byte limit,
// expand-down) with the full state compared at each #GP.
#include "asm.h"
#include "sdm_flags.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t PUSH_ES = 0x06, POP_ES = 0x07, PUSH_GS_2 = 0xa8, XLAT = 0xd7;
constexpr unsigned BX = EBX, BP = EBP, SI = ESI, DI = EDI;
constexpr unsigned RM16_DISP16 = 6;

uint32_t sext8(uint32_t v) { return uint32_t(int32_t(int8_t(v))); }

// Sets the registers of a random 16-bit ModRM form so that its effective
// address is the window offset + `target` (mod 64 KiB), and emits the ModRM.
// Two-register forms get a random first register, so the sum often wraps.
void addr16_operand(Case& c, Rng& rng, Asm& x, unsigned reg_field, uint32_t target) {
  static const int base_of[8] = {BX, BX, BP, BP, SI, DI, BP, BX};
  static const int index_of[8] = {SI, DI, SI, DI, -1, -1, -1, -1};
  const unsigned mod = rng.below(3), rm = rng.below(8);
  uint32_t disp = 0;
  if (mod == 1) disp = sext8(rng.u32());
  if (mod == 2) disp = rng.u32() & 0xffff;
  c.seg16 = true;
  if (mod == 0 && rm == RM16_DISP16) {
    x.mem16(reg_field, mod, rm, target);  // relocated by the window offset
    return;
  }
  x.mem16(reg_field, mod, rm, disp);
  const int b = base_of[rm], ix = index_of[rm];
  uint32_t rest = (target - disp) & 0xffff;
  auto set16 = [&](unsigned r, uint32_t low) { c.gpr[r] = (rng.u32() & 0xffff0000u) | (low & 0xffff); };
  if (ix >= 0) {
    uint32_t first = rng.u32() & 0xffff;
    set16(unsigned(b), first);
    set16(unsigned(ix), rest - first);
    c.gpr_rel16 |= uint8_t(1u << ix);
  } else {
    set16(unsigned(b), rest);
    c.gpr_rel16 |= uint8_t(1u << b);
  }
}

// 67, GS override and (for 16-bit operands) 66, in a random order.
void prefixes16(Asm& x, Rng& rng, unsigned bits, bool gs = true) {
  std::vector<uint8_t> p = {ASIZE};
  if (gs) p.push_back(SEG_GS);
  if (bits == 16) p.push_back(OSIZE);
  for (size_t i = p.size(); i > 1; --i) std::swap(p[i - 1], p[rng.below(uint32_t(i))]);
  x.b.insert(x.b.end(), p.begin(), p.end());
}

void random_window(Case& c, Rng& rng, uint32_t size) {
  c.mem.resize(size);
  for (auto& b : c.mem) b = uint8_t(rng.u32());
}

// Operand registers that no 16-bit ModRM form uses for addressing.
unsigned operand_reg(Rng& rng, unsigned bits) {
  static const unsigned r8[] = {AL, CL, DL, AH, CH, DH};
  static const unsigned r32[] = {EAX, ECX, EDX};
  return bits == 8 ? r8[rng.below(6)] : r32[rng.below(3)];
}

constexpr uint32_t MEM16_WINDOW = 16;

void gen_mem16(std::vector<Case>& out, Rng& rng) {
  enum Kind : unsigned { AluMemG, AluGMem, AluMemImm, Unary, ShiftImm, MovStore, MovLoad, Xchg, k_kinds };
  for (unsigned kind = 0; kind < k_kinds; ++kind)
    for (unsigned bits : {8u, 16u, 32u})
      for (int n = 0; n < 400; ++n) {
        Case c = random_case(rng);
        random_window(c, rng, MEM16_WINDOW);
        const uint32_t target = rng.below(MEM16_WINDOW - bits / 8 + 1);
        const unsigned r = operand_reg(rng, bits), op = rng.below(8);
        Asm x;
        prefixes16(x, rng, bits);
        const bool imm8 = kind == AluMemImm && bits != 8 && rng.coin();  // 83 ib instead of 81 iz
        switch (kind) {
          case AluMemG: x.op({uint8_t(op * 8 + (bits == 8 ? 0 : 1))}); break;
          case AluGMem: x.op({uint8_t(op * 8 + (bits == 8 ? 2 : 3))}); break;
          case AluMemImm: x.op({uint8_t(bits == 8 ? 0x80 : imm8 ? 0x83 : 0x81)}); break;
          case Unary: x.op({uint8_t(op < 2 ? (bits == 8 ? 0xfe : 0xff) : (bits == 8 ? 0xf6 : 0xf7))}); break;
          case ShiftImm: x.op({uint8_t(bits == 8 ? 0xc0 : 0xc1)}); break;
          case MovStore: x.op({uint8_t(bits == 8 ? 0x88 : 0x89)}); break;
          case MovLoad: x.op({uint8_t(bits == 8 ? 0x8a : 0x8b)}); break;
          case Xchg: x.op({uint8_t(bits == 8 ? 0x86 : 0x87)}); break;
        }
        const unsigned unary_ext = op < 2 ? op : 2 + (op & 1);  // INC DEC NOT NEG
        const unsigned field = kind == AluMemImm || kind == ShiftImm ? op : kind == Unary ? unary_ext : r;
        addr16_operand(c, rng, x, field, target);
        if (kind == AluMemImm) x.imm(imm8 ? 8 : bits, rng.u32());
        uint32_t count = 0;
        if (kind == ShiftImm) count = rng.below(9), x.i8(count);
        x.into(c);
        const bool logic = op == 1 || op == 4 || op == 6;
        if ((kind == AluMemG || kind == AluGMem || kind == AluMemImm) && logic) c.defined_flags = fl::STATUS & ~fl::AF;
        if (kind == ShiftImm) c.defined_flags = shift_defined_flags(Grp2(op), bits, count);
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY_U(Addr16, MemoryForms, MEM16_WINDOW, gen_mem16)

// String instructions with 16-bit addressing: ES is reloaded with SEL16 around
// the instruction (push es; push gs; pop es; ...; pop es on the scratch stack),
// sources use a GS override.
constexpr uint32_t STR_WINDOW = 1024, SRC_AT = 300, DST_AT = 700, k_max_count = 40;
constexpr uint8_t MOVSB = 0xa4, CMPSB = 0xa6, STOSB = 0xaa, LODSB = 0xac, SCASB = 0xae;

void gen_string16(std::vector<Case>& out, Rng& rng) {
  for (uint8_t op8 : {MOVSB, CMPSB, STOSB, LODSB, SCASB}) {
    const bool compares = op8 == CMPSB || op8 == SCASB;
    const bool reads_src = op8 == MOVSB || op8 == LODSB || op8 == CMPSB;
    for (unsigned bits : {8u, 16u, 32u})
      for (unsigned p = 0; p < 3; ++p) {  // none, F3, F2
        if (p == 2 && !compares) continue;
        for (int i = 0; i < 60; ++i) {
          Case c = random_case(rng, true);
          c.eflags = (c.eflags & ~fl::DF) | (i & 1 ? fl::DF : 0);
          const uint32_t count = i < 8 ? uint32_t(i / 2) : rng.below(k_max_count + 1);
          const uint32_t hi = rng.u32() & 0xffff0000u;  // must be ignored and kept
          c.gpr[ECX] = (rng.u32() & 0xffff0000u) | count;
          c.gpr[ESI] = hi | (SRC_AT + rng.below(8));
          c.gpr[EDI] = (rng.u32() & 0xffff0000u) | (DST_AT + rng.below(8));
          c.gpr_rel16 = uint8_t(1u << ESI | 1u << EDI);
          c.seg16 = true;
          c.mem.resize(STR_WINDOW);
          for (auto& b : c.mem) b = uint8_t(rng.below(4));
          for (uint32_t a = 0; a + (DST_AT - SRC_AT) < STR_WINDOW; ++a) c.mem[a + (DST_AT - SRC_AT)] = c.mem[a];
          if (op8 == SCASB) {
            for (uint32_t k = 0; k < STR_WINDOW; ++k) c.mem[k] = uint8_t(c.gpr[EAX] >> (8 * (k % (bits / 8))));
            if (rng.coin()) c.mem[rng.below(STR_WINDOW)] ^= 1;
          } else if (rng.coin()) {
            c.mem[DST_AT - 200 + rng.below(400)] ^= 0x80;
          }
          Asm x;
          x.op({PUSH_ES, TWO_BYTE, PUSH_GS_2, POP_ES});
          std::vector<uint8_t> pf = {ASIZE};
          if (reads_src) pf.push_back(SEG_GS);
          if (p == 1) pf.push_back(REP);
          if (p == 2) pf.push_back(REPNE);
          if (bits == 16) pf.push_back(OSIZE);
          for (size_t k = pf.size(); k > 1; --k) std::swap(pf[k - 1], pf[rng.below(uint32_t(k))]);
          x.b.insert(x.b.end(), pf.begin(), pf.end());
          x.op({uint8_t(bits == 8 ? op8 : op8 + 1), POP_ES});
          x.into(c);
          if (!compares) c.defined_flags = fl::STATUS;
          out.push_back(std::move(c));
        }
      }
  }
}
CPU_DIFF_FAMILY(Addr16, String, STR_WINDOW, gen_string16)

// XLAT with 16-bit addressing: AL = GS:[(BX + AL) mod 64 KiB].
constexpr uint32_t XLAT_WINDOW = 272;
void gen_xlat16(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 512; ++i) {
    Case c = random_case(rng);
    random_window(c, rng, XLAT_WINDOW);
    const uint32_t t = rng.below(XLAT_WINDOW), al = c.gpr[EAX] & 0xff;
    c.gpr[EBX] = (c.gpr[EBX] & 0xffff0000u) | ((t - al) & 0xffff);
    c.gpr_rel16 = uint8_t(1u << EBX);
    c.seg16 = true;
    Asm x;
    prefixes16(x, rng, 32);
    x.op({XLAT});
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Addr16, Xlat, XLAT_WINDOW, gen_xlat16)

// BT/BTS/BTR/BTC m, r with 16-bit addressing: the register bit offset moves
// the access by whole operands in both directions (SDM BT).
constexpr uint32_t BT_WINDOW = 1024, BT_OPERAND_AT = 512;
void gen_bt16(std::vector<Case>& out, Rng& rng) {
  static const uint8_t ops[] = {0xa3, 0xab, 0xb3, 0xbb};
  for (uint8_t opc : ops)
    for (unsigned bits : {16u, 32u})
      for (int i = 0; i < 300; ++i) {
        Case c = random_case(rng);
        random_window(c, rng, BT_WINDOW);
        const unsigned r = operand_reg(rng, bits);
        Asm x;
        if (opc != 0xa3 && rng.below(4) == 0) x.op({LOCK});
        prefixes16(x, rng, bits);
        x.op({TWO_BYTE, opc});
        addr16_operand(c, rng, x, r, BT_OPERAND_AT);
        int32_t bitoff = rng.coin() ? int32_t(rng.below(7000)) - 3500 : int32_t(rng.below(bits));
        set_reg(c, bits, r, uint32_t(bitoff));
        x.into(c);
        c.defined_flags = fl::CF | fl::ZF;  // SDM: OF SF AF PF undefined
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY_U(Addr16, BtMem, BT_WINDOW, gen_bt16)

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// MOV AL/AX/EAX <-> moffs16 (67 A0-A3: a 16-bit offset, relocated).
void gen_moffs16(std::vector<Case>& out, Rng& rng) {
  for (uint8_t op : {uint8_t(0xa0), uint8_t(0xa1), uint8_t(0xa2), uint8_t(0xa3)})
    for (unsigned bits : {8u, 16u, 32u}) {
      if ((bits == 8) != (op == 0xa0 || op == 0xa2)) continue;
      for (int i = 0; i < 64; ++i) {
        Case c = random_case(rng);
        random_window(c, rng, MEM16_WINDOW);
        c.seg16 = true;
        Asm x;
        prefixes16(x, rng, bits);
        x.op({op});
        x.relocs16.push_back(uint8_t(x.b.size()));
        x.i16(rng.below(MEM16_WINDOW - bits / 8 + 1));
        x.into(c);
        out.push_back(std::move(c));
      }
    }
}
CPU_DIFF_FAMILY(Addr16, Moffs16, MEM16_WINDOW, gen_moffs16)

// Data segment loads in protected mode (SDM MOV, POP, LDS/LES/LGS): ES, DS or
// GS gets SEL16 (with RPL 0-3), a null selector, or a selector past the LDT's
// last entry (#GP with the selector as error code), then "mov eax, sreg" (upper
// half zeroed with a 32-bit operand) shows what was loaded, and the original
// register is restored. FS is left alone: the 64-bit process keeps its TLS there.
void gen_segloads(std::vector<Case>& out, Rng& rng) {
  constexpr uint8_t PUSH_DS = 0x1e, POP_DS = 0x1f, POP_GS_2 = 0xa9, PUSH_IB = 0x6a;
  constexpr uint8_t MOV_SREG_EW = 0x8e, MOV_EW_SREG = 0x8c, LES = 0xc4, LDS = 0xc5, LGS_2 = 0xb5;
  constexpr unsigned ES_N = 0, DS_N = 3, GS_N = 5;
  const uint16_t sels[] = {layout::SEL16, uint16_t(layout::SEL16 & ~3u), uint16_t((layout::SEL16 & ~3u) | 1), 0, 3,
                           uint16_t(layout::SEL16 + 8 * layout::LDT_ENTRIES), uint16_t(layout::SEL16 + 0x80)};
  for (unsigned sreg : {ES_N, DS_N, GS_N})
    for (unsigned form = 0; form < 3; ++form)  // mov sreg, r16; pop sreg; lxs r32, m16:32
      for (uint16_t sel : sels)
        for (int i = 0; i < 4; ++i) {
          Case c = random_case(rng);
          c.seg16 = true;  // needs SEL16 in the native LDT
          c.mem.assign(16, 0);
          Asm x;
          if (sreg == GS_N) x.op({TWO_BYTE, PUSH_GS_2});
          else x.op({uint8_t(sreg == ES_N ? PUSH_ES : PUSH_DS)});
          if (form == 0) {
            set_reg(c, 16, ECX, sel);
            x.op({MOV_SREG_EW}).rr(sreg, ECX);
          } else if (form == 1) {
            x.op({PUSH_IB, uint8_t(sel)});
            if (sreg == GS_N) x.op({TWO_BYTE, POP_GS_2});
            else x.op({uint8_t(sreg == ES_N ? POP_ES : POP_DS)});
          } else {
            uint32_t off = rng.u32();
            for (unsigned k = 0; k < 4; ++k) c.mem[4 + k] = uint8_t(off >> (8 * k));
            c.mem[8] = uint8_t(sel), c.mem[9] = uint8_t(sel >> 8);
            if (sreg == GS_N) x.op({TWO_BYTE, LGS_2});
            else x.op({uint8_t(sreg == ES_N ? LES : LDS)});
            // DS is reloaded by this very instruction: the operand goes through SS.
            x.b.insert(x.b.end() - (sreg == GS_N ? 2 : 1), 0x36);
            x.mem(EDX, 4);
          }
          x.osize(rng.coin() ? 16 : 32).op({MOV_EW_SREG}).rr(sreg, EAX);
          if (sreg == GS_N) x.op({TWO_BYTE, POP_GS_2});
          else x.op({uint8_t(sreg == ES_N ? POP_ES : POP_DS)});
          x.into(c);
          out.push_back(std::move(c));
        }
}
CPU_DIFF_FAMILY(Addr16, SegmentLoads, 16, gen_segloads)

}  // namespace
}  // namespace anykvm::difftest

namespace anykvm::difftest {
namespace {

// Segment limit checks (SDM vol. 3, 5.3: #GP(0) for an access through GS/ES
// past the limit, every byte of the operand counted) on SEL_LIMITED: a case
// loads GS (or ES) with it, accesses operands that end before, at and after
// the limit, and restores the register (after a fault the native entry stub
// reloads it). Loads, stores, read-modify-writes (memory, flags and registers
// must be untouched at the fault), CMPXCHG8B, BTS, PUSH/POP m (POP leaves ESP
// unchanged when the store faults), BOUND, and REP LODS/MOVS/STOS that run
// into the limit part-way (ECX/ESI/EDI show the elements done).
// `edges`: offsets where validity changes; `up` says the valid side is below
// (an expand-up limit, or the 4 GiB end of an expand-down segment).
struct Edge {
  uint32_t at;  // first invalid offset (up) or first valid offset (!up)
  bool up;
};
void gen_seglimit(std::vector<Case>& out, Rng& rng, uint16_t sel, std::vector<Edge> edges) {
  constexpr uint8_t PUSH_GS[] = {TWO_BYTE, 0xa8}, POP_GS[] = {TWO_BYTE, 0xa9};
  constexpr uint8_t PUSH_ES = 0x06, POP_ES = 0x07, PUSH_IB = 0x6a;
  auto abs_mem = [](Asm& x, unsigned reg, uint32_t off) { x.b.push_back(uint8_t((reg & 7) << 3 | 5)), x.d32(off); };
  for (int i = 0; i < 1600; ++i) {
    Case c = random_case(rng);
    c.seg16 = true;  // needs the LDT entries natively
    const unsigned kind = i % 10;
    const unsigned bits = std::array<unsigned, 3>{8, 16, 32}[rng.below(3)];
    const unsigned size = kind == 5 ? 8 : kind == 7 ? 4 : kind == 8 ? (bits == 8 ? 8 : bits / 4) : bits / 8;
    const Edge e = edges[rng.below(uint32_t(edges.size()))];
    const uint32_t off = e.at - (e.up ? size : 0) + uint32_t(int32_t(rng.below(7)) - 3);  // 3 bytes either side
    const unsigned r = std::array<unsigned, 3>{EAX, ECX, EDX}[rng.below(3)];
    Asm x;
    const bool es = kind == 9 && rng.coin();  // REP STOS through ES
    if (es) x.op({PUSH_ES, PUSH_IB, uint8_t(sel), POP_ES});
    else x.op({PUSH_GS[0], PUSH_GS[1], PUSH_IB, uint8_t(sel), POP_GS[0], POP_GS[1]});
    if (kind != 9) x.op({SEG_GS});
    switch (kind) {
      case 0: x.opc(bits, 0x8a, 0x8b), abs_mem(x, r, off); break;                       // mov r, [m]
      case 1: x.opc(bits, 0x88, 0x89), abs_mem(x, r, off); break;                       // mov [m], r
      case 2: x.opc(bits, uint8_t(rng.below(8) * 8), 0), x.b.back() += bits == 8 ? 0 : 1, abs_mem(x, r, off); break;
      case 3: x.osize(bits).op({TWO_BYTE, uint8_t(bits == 8 ? 0xc0 : 0xc1)}), abs_mem(x, r, off); break;  // xadd
      case 4: x.osize(bits).op({TWO_BYTE, uint8_t(bits == 8 ? 0xb0 : 0xb1)}), abs_mem(x, r, off); break;  // cmpxchg
      case 5: x.op({TWO_BYTE, 0xc7}), abs_mem(x, 1, off); break;                        // cmpxchg8b
      case 6: x.osize(bits == 8 ? 32 : bits).op({TWO_BYTE, 0xba}), abs_mem(x, 5, off), x.i8(rng.u32()); break;  // bts
      // push/pop dword [m] (32-bit only: the POP GS that follows must find the saved GS)
      case 7: x.op({uint8_t(rng.coin() ? 0xff : 0x8f)}), abs_mem(x, x.b.back() == 0xff ? 6 : 0, off); break;
      case 8: x.osize(bits == 8 ? 32 : bits).op({0x62}), abs_mem(x, r, off); break;  // bound
      case 9: {  // rep lods / movs (source GS) or rep stos (ES) running into the limit
        const unsigned esz = bits / 8;
        // Toward the edge: up to it from below (up) or down to it from above (DF = 1).
        const uint32_t k = esz * rng.below(6) + (rng.coin() ? rng.below(esz) : 0);
        const uint32_t start = e.up ? e.at - esz - k : e.at + k;
        c.eflags = (c.eflags & ~fl::DF) | (e.up ? 0 : fl::DF);
        c.gpr[ECX] = rng.below(10);
        if (es) {
          c.gpr[EDI] = start;
          x.op({REP}).opc(bits, 0xaa, 0xab);
        } else {
          c.gpr[ESI] = start;
          c.gpr[EDI] = 0x100;
          c.gpr_rel = uint8_t(1u << EDI);  // a flat destination (the start of MEM)
          const bool movs = rng.coin();
          x.op({SEG_GS, REP}).opc(bits, movs ? 0xa4 : 0xac, movs ? 0xa5 : 0xad);
        }
        break;
      }
    }
    if (es) x.op({POP_ES});
    else x.op({POP_GS[0], POP_GS[1]});
    x.into(c);
    if (kind == 2) c.defined_flags = fl::STATUS & ~fl::AF;  // logic ops leave AF undefined
    if (kind == 6) c.defined_flags = fl::CF | fl::ZF;
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY_U(Addr16, SegmentLimit, 0, [](auto& v, Rng& r) {
  gen_seglimit(v, r, layout::SEL_LIMITED, {{layout::LIMITED_LIMIT + 1, true}});
})
// Expand-down (SDM vol. 3, 5.3): valid offsets are limit+1 .. FFFFFFFFh.
CPU_DIFF_FAMILY_U(Addr16, ExpandDownLimit, 0, [](auto& v, Rng& r) {
  gen_seglimit(v, r, layout::SEL_EXPAND_DOWN, {{layout::EXPAND_DOWN_LIMIT + 1, false}, {0, true}});
})

}  // namespace
}  // namespace anykvm::difftest
