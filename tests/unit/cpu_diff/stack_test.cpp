// Differential tests of the stack instructions: ENTER (every nesting level
// 0-31, levels >= 32 masked, small and large frame sizes, 16- and 32-bit
// operand size), LEAVE, PUSHA/PUSHAD and POPA/POPAD (invalid in 64-bit mode;
// POPA skips the stored ESP), and PUSH/POP of registers (ESP included: SDM
// "PUSH" pushes the old ESP, "POP ESP" loads the popped value), immediates and
// memory (ESP-based addresses too), PUSHF/POPF with status flags and DF. The
// stack is the case's window (ESP and EBP point into it).
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t ENTER = 0xc8, LEAVE = 0xc9, PUSHA = 0x60, POPA = 0x61;
constexpr uint8_t PUSH_R = 0x50, POP_R = 0x58, PUSH_IB = 0x6a, PUSH_IZ = 0x68, GRP5 = 0xff, POP_EV = 0x8f;
constexpr uint8_t PUSHF = 0x9c, POPF = 0x9d;
constexpr unsigned PUSH_EXT = 6;
constexpr uint32_t STACK_WINDOW = 1024;
constexpr uint32_t EBP_AT = 600, ESP_AT = 800;
constexpr uint8_t MODRM_DISP8_SIB_EAX = 0x44, SIB_ESP_BASE = 0x24;  // [esp + disp8]

Case stack_case(Rng& rng) {
  Case c = random_case(rng);
  c.gpr[ESP] = ESP_AT + 4 * rng.below(8);
  c.gpr[EBP] = EBP_AT + 4 * rng.below(8);
  c.gpr_rel = uint8_t(1u << ESP | 1u << EBP);
  c.mem.resize(STACK_WINDOW);
  for (auto& b : c.mem) b = uint8_t(rng.u32());
  return c;
}

void gen_enter_leave(std::vector<Case>& out, Rng& rng) {
  for (unsigned bits : {32u, 16u})
    for (uint32_t level = 0; level < 40; ++level)
      for (uint32_t size : {0u, 4u, 0x18u, 0x1000u, 0xfffcu, rng.u32() & 0xffff}) {
        Case c = stack_case(rng);
        Asm x;
        x.osize(bits).op({ENTER}).i16(size).i8(level);
        x.into(c);
        out.push_back(std::move(c));
      }
  // Levels 0 and 1 read nothing through EBP: any EBP, so that a 16-bit ENTER
  // on this 32-bit stack shows how much of EBP receives the frame pointer. The
  // SDM's pseudo-code reads "IF StackSize = 32 THEN EBP <- FrameTemp"; the AMD
  // host writes BP only (the operand size), and the engine follows the host.
  for (unsigned bits : {32u, 16u})
    for (uint32_t level : {0u, 1u, 32u, 33u})
      for (int i = 0; i < 16; ++i) {
        Case c = stack_case(rng);
        c.gpr[EBP] = rng.u32();
        c.gpr_rel = uint8_t(1u << ESP);
        Asm x;
        x.osize(bits).op({ENTER}).i16(rng.coin() ? 4 * rng.below(16) : rng.u32() & 0xffff).i8(level);
        x.into(c);
        out.push_back(std::move(c));
      }
  for (unsigned bits : {32u, 16u})
    for (int i = 0; i < 64; ++i) {
      Case c = stack_case(rng);
      Asm x;
      x.osize(bits).op({LEAVE});
      x.into(c);
      out.push_back(std::move(c));
    }
}
CPU_DIFF_FAMILY(Stack, EnterLeave, STACK_WINDOW, gen_enter_leave)

void gen_pusha_popa(std::vector<Case>& out, Rng& rng) {
  for (unsigned bits : {32u, 16u})
    for (uint8_t op : {PUSHA, POPA})
      for (int i = 0; i < 64; ++i) {
        Case c = stack_case(rng);
        Asm x;
        x.osize(bits).op({op});
        x.into(c);
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY(Stack, PushaPopa, STACK_WINDOW, gen_pusha_popa)

void gen_push_pop(std::vector<Case>& out, Rng& rng) {
  for (unsigned bits : {32u, 16u}) {
    for (unsigned r = 0; r < 8; ++r)
      for (uint8_t base : {PUSH_R, POP_R})
        for (int i = 0; i < 4; ++i) {
          Case c = stack_case(rng);
          Asm x;
          x.osize(bits).op({uint8_t(base + r)});
          x.into(c);
          out.push_back(std::move(c));
        }
    for (int i = 0; i < 32; ++i) {
      Case c = stack_case(rng);
      Asm x;
      x.osize(bits);
      switch (i % 6) {
        case 0: x.op({PUSH_IB}).i8(rng.u32()); break;
        case 1: x.op({PUSH_IZ}).imm(bits, rng.u32()); break;
        case 2: x.op({GRP5}).mem(PUSH_EXT, 0); break;
        case 3: x.op({POP_EV}).mem(0, 0); break;
        // ESP-relative: POP computes the address after incrementing ESP (SDM "POP").
        case 4: x.op({GRP5, MODRM_DISP8_SIB_EAX | PUSH_EXT << 3, SIB_ESP_BASE}).i8(4 * (i % 4)); break;
        case 5: x.op({POP_EV, MODRM_DISP8_SIB_EAX, SIB_ESP_BASE}).i8(4 * (i % 4)); break;
      }
      x.into(c);
      out.push_back(std::move(c));
    }
    for (uint8_t op : {PUSHF, POPF})
      for (int i = 0; i < 32; ++i) {
        Case c = stack_case(rng);
        // The popped image carries status flags and DF only: IF/IOPL/AC/TF would
        // act differently at CPL 3 (native) and CPL 0 (engine) or trap.
        uint32_t img = rng.flags(true);
        for (unsigned k = 0; k < 4; ++k) c.mem[c.gpr[ESP] + k] = uint8_t(img >> (8 * k));
        Asm x;
        x.osize(bits).op({op});
        x.into(c);
        out.push_back(std::move(c));
      }
  }
}
CPU_DIFF_FAMILY(Stack, PushPop, STACK_WINDOW, gen_push_pop)

// POPF with the ID and NT bits (SDM POPF: both writable at any privilege
// level; IF/IOPL/AC would differ between CPL 3 and CPL 0): "push imm32; popfd;
// pushfd; pop eax; and eax, ID|NT" leaves what stuck in EAX.
void gen_popf_id_nt(std::vector<Case>& out, Rng& rng) {
  constexpr uint32_t ID = 1u << 21, NT = 1u << 14;
  constexpr uint8_t AND_EAX_IZ = 0x25, POP_EAX = 0x58;
  for (unsigned bits : {32u, 16u})
    for (uint32_t k = 0; k < 4; ++k)
      for (int i = 0; i < 8; ++i) {
        Case c = stack_case(rng);
        uint32_t img = rng.flags(true) | (k & 1 ? ID : 0) | (k & 2 ? NT : 0);
        Asm x;
        x.op({PUSH_IZ}).d32(img).osize(bits).op({POPF}).op({PUSHF, POP_EAX, AND_EAX_IZ}).d32(ID | NT);
        x.into(c);
        out.push_back(std::move(c));
      }
}
CPU_DIFF_FAMILY(Stack, PopfIdNt, STACK_WINDOW, gen_popf_id_nt)

}  // namespace
}  // namespace anykvm::difftest
