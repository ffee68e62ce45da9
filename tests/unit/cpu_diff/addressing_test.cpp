// Differential tests of effective-address computation (SDM vol. 2, 2.1.5,
// tables 2-1 to 2-3): LEA over random 32-bit ModRM/SIB forms with random
// register values (wrap-around included), LEA with 16-bit addressing (67
// prefix: BX/BP/SI/DI combinations, disp8/disp16, 16-bit wrap), LEA with a
// register operand (#UD), and real loads/stores through random 32-bit ModRM/SIB
// forms whose base register points into the case's window. (Memory accesses
// with 16-bit addressing would reach linear addresses below 64 KiB, which a
// Linux process cannot map, so 16-bit forms are covered through LEA only.)
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t LEA = 0x8d, MOV_EV_GV = 0x89, MOV_GV_EV = 0x8b;
constexpr unsigned MOD_MEM = 0, MOD_DISP8 = 1, MOD_DISP32 = 2, MOD_REG = 3;
constexpr unsigned RM_SIB = 4, RM_DISP32 = 5, SIB_NO_INDEX = 4, SIB_NO_BASE = 5;
constexpr unsigned RM16_DISP16 = 6;
constexpr uint32_t ADDR_WINDOW = 640;
constexpr uint32_t ADDR_BASE_AT = 256;

uint8_t modrm(unsigned mod, unsigned reg, unsigned rm) { return uint8_t(mod << 6 | reg << 3 | rm); }

unsigned dest_reg(Rng& rng) {
  unsigned r = rng.below(7);
  return r >= ESP ? r + 1 : r;
}

void gen_lea32(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 3000; ++i) {
    Case c = random_case(rng);
    if (i % 3 == 0)  // small values too, so sums without wrap-around are common
      for (auto& g : c.gpr) g = rng.below(0x10000);
    unsigned mod = rng.below(3), rm = rng.below(8), reg = dest_reg(rng);
    Asm x;
    x.osize(rng.below(4) == 0 ? 16 : 32).op({LEA, modrm(mod, reg, rm)});
    bool disp32 = mod == MOD_DISP32 || (mod == MOD_MEM && rm == RM_DISP32);
    if (rm == RM_SIB) {
      uint8_t sib = uint8_t(rng.u32());
      x.i8(sib);
      if (mod == MOD_MEM && (sib & 7) == SIB_NO_BASE) disp32 = true;
    }
    if (mod == MOD_DISP8) x.i8(rng.u32());
    if (disp32) x.d32(rng.u32());
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Addressing, Lea32, 0, gen_lea32)

void gen_lea16(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 3000; ++i) {
    Case c = random_case(rng);
    unsigned mod = rng.below(3), rm = rng.below(8), reg = dest_reg(rng);
    Asm x;
    x.op({ASIZE}).osize(rng.coin() ? 16 : 32).op({LEA, modrm(mod, reg, rm)});
    if (mod == MOD_DISP8) x.i8(rng.u32());
    if (mod == MOD_DISP32 || (mod == MOD_MEM && rm == RM16_DISP16)) x.i16(rng.u32());  // disp16
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Addressing, Lea16, 0, gen_lea16)

void gen_lea_register(std::vector<Case>& out, Rng& rng) {
  for (unsigned rm = 0; rm < 8; ++rm) {
    Case c = random_case(rng);
    c.code = {LEA, uint8_t(modrm(MOD_REG, EAX, rm))};  // #UD: LEA needs a memory operand
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Addressing, LeaRegisterOperandIsUd, 0, gen_lea_register)

// Loads and stores through random 32-bit forms, the base in the window.
void gen_mem32(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 4000; ++i) {
    Case c = random_case(rng);
    for (unsigned r = 0; r < 8; ++r) c.gpr[r] = rng.below(16);
    unsigned mod = rng.below(3), rm = rng.below(8), reg = dest_reg(rng);
    bool store = rng.coin();
    Asm x;
    x.op({store ? MOV_EV_GV : MOV_GV_EV, modrm(mod, reg, rm)});
    int base = -1, index = -1;
    bool disp32 = mod == MOD_DISP32 || (mod == MOD_MEM && rm == RM_DISP32);
    bool abs32 = mod == MOD_MEM && rm == RM_DISP32;
    if (rm == RM_SIB) {
      unsigned scale = rng.below(4), idx = rng.below(8), b = rng.below(8);
      if (mod == MOD_MEM && b == SIB_NO_BASE) disp32 = abs32 = true;
      else base = int(b);
      if (idx != SIB_NO_INDEX) {
        if (int(idx) == base) idx = SIB_NO_INDEX;  // one register cannot be both window pointer and small index
        else index = int(idx);
      }
      x.i8(uint8_t(scale << 6 | idx << 3 | b));
    } else if (!abs32) {
      base = int(rm);
    }
    if (mod == MOD_DISP8) x.i8(uint32_t(int32_t(rng.below(256)) - 128));
    if (disp32) {
      uint32_t d = abs32 ? ADDR_BASE_AT + rng.below(64) : uint32_t(int32_t(rng.below(200)) - 100);
      if (abs32) x.relocs.push_back(uint8_t(x.b.size()));
      x.d32(d);
    }
    if (base >= 0) {
      c.gpr[unsigned(base)] = ADDR_BASE_AT + rng.below(16);
      c.gpr_rel = uint8_t(1u << base);
    }
    (void)index;
    x.into(c);
    c.mem.resize(ADDR_WINDOW);
    for (auto& b : c.mem) b = uint8_t(rng.u32());
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Addressing, LoadStore32, ADDR_WINDOW, gen_mem32)

}  // namespace
}  // namespace anykvm::difftest
