// Differential tests of near control transfers with 32-bit operands (SDM
// vol. 2: CALL rel32, CALL r/m32, JMP rel8/rel32, JMP r/m32, RET, RET imm16).
// Every sequence ends at the end of the case's code: a CALL lands on a RET
// (plain or imm16) that returns to a JMP over it, so the pushed return address
// (an absolute address, the same on both sides) stays in the window and ESP
// shows what RET imm16 released. Indirect targets come from "call next; pop r"
// plus an offset, in a register or stored to the window. (16-bit operand
// forms truncate EIP below 64 KiB, where a Linux process cannot run code.)
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint8_t CALL_REL32 = 0xe8, JMP_REL32 = 0xe9, JMP_REL8 = 0xeb, RET = 0xc3, RET_IW = 0xc2;
constexpr uint8_t GRP5 = 0xff, POP_R = 0x58, ADD_EV_IB = 0x83, MOV_EV_GV = 0x89, MOV_EAX_IMM = 0xb8;
constexpr unsigned CALL_EXT = 2, JMP_EXT = 4;
constexpr uint32_t CTL_WINDOW = 256, ESP_AT = 192;

Case stack_case(Rng& rng) {
  Case c = random_case(rng);
  c.gpr[ESP] = ESP_AT + 4 * rng.below(8);
  c.gpr_rel = uint8_t(1u << ESP);
  c.mem.resize(CTL_WINDOW);
  for (auto& b : c.mem) b = uint8_t(rng.u32());
  return c;
}

unsigned gp_reg(Rng& rng) {
  static const unsigned r[] = {EAX, ECX, EDX, EBX, EBP, ESI, EDI};
  return r[rng.below(7)];
}

// Appends "jmp over; ret[ imm16]" and returns the offset of the RET.
size_t ret_tail(Asm& x, bool imm, uint16_t release) {
  x.op({JMP_REL8, uint8_t(imm ? 3 : 1)});
  size_t at = x.b.size();
  if (imm) x.op({RET_IW}).i16(release);
  else x.op({RET});
  return at;
}

void gen_control(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 2400; ++i) {
    Case c = stack_case(rng);
    Asm x;
    const bool imm = rng.coin();
    const uint16_t release = uint16_t(rng.coin() ? 4 * rng.below(8) : rng.u32());
    switch (i % 6) {
      case 0: {  // call rel32 to a RET behind a JMP
        x.op({CALL_REL32}).d32(2);
        ret_tail(x, imm, release);
        break;
      }
      case 1: case 2: {  // call r32 / call [m32]: the target from "call next; pop r; add r, k"
        const unsigned r = gp_reg(rng);
        const bool mem = i % 6 == 2;
        x.op({CALL_REL32}).d32(0).op({uint8_t(POP_R + r), ADD_EV_IB, uint8_t(0xc0 | r), 0});
        const size_t add_imm = x.b.size() - 1;
        const uint32_t slot = 4 * rng.below(8);  // far below ESP: the pushes do not reach it
        if (mem) x.op({MOV_EV_GV}).mem(r, slot), x.op({GRP5}).mem(CALL_EXT, slot);
        else x.op({GRP5, uint8_t(0xc0 | CALL_EXT << 3 | r)});
        const size_t ret_at = ret_tail(x, imm, release);
        x.b[add_imm] = uint8_t(ret_at - 5);  // pop r gave the address of offset 5
        break;
      }
      case 3: case 4: {  // jmp r32 / jmp [m32] over a "mov eax, imm32"
        const unsigned r = gp_reg(rng);
        const bool mem = i % 6 == 4;
        x.op({CALL_REL32}).d32(0).op({uint8_t(POP_R + r), ADD_EV_IB, uint8_t(0xc0 | r), 0});
        const size_t add_imm = x.b.size() - 1;
        if (mem) x.op({MOV_EV_GV}).mem(r, 8), x.op({GRP5}).mem(JMP_EXT, 8);
        else x.op({GRP5, uint8_t(0xc0 | JMP_EXT << 3 | r)});
        x.op({MOV_EAX_IMM}).d32(0x600df00d);
        x.b[add_imm] = uint8_t(x.b.size() - 5);
        break;
      }
      case 5: {  // jmp rel8 / rel32 over a "mov eax, imm32" (or onto it: displacement 0)
        const uint8_t skip = rng.coin() ? 5 : 0;
        if (rng.coin()) x.op({JMP_REL8, skip});
        else x.op({JMP_REL32}).d32(skip);
        x.op({MOV_EAX_IMM}).d32(0x600df00d);
        break;
      }
    }
    x.into(c);
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Control, CallJmpRet, CTL_WINDOW, gen_control)

// A loop that jumps into the middle of an instruction it executed before (the
// engine caches decoded instructions per page: the cache must be keyed by
// exact address):
//   0: B8 40 43 EB 00   mov eax, 00EB4340h  (from 1: inc eax; inc ebx; jmp +0)
//   5: 49               dec ecx
//   6: 75 F9            jnz 1
void gen_overlapping(std::vector<Case>& out, Rng& rng) {
  for (int i = 0; i < 64; ++i) {
    Case c = random_case(rng);
    c.gpr[ECX] = 1 + rng.below(6);
    c.code = {0xb8, std::array<uint8_t, 4>{0x40, 0x42, 0x46, 0x47}[rng.below(4)], 0x43, 0xeb, 0x00, 0x49, 0x75, 0xf9};  // inc r: not ECX/ESP
    out.push_back(std::move(c));
  }
}
CPU_DIFF_FAMILY(Control, JumpIntoAnInstruction, 0, gen_overlapping)

}  // namespace
}  // namespace anykvm::difftest
