// Execution of one x87 escape instruction on the host's own x87 unit, so that
// every result, condition code, exception flag and tag is bit-exact to the
// hardware (transcendentals included). The guest's state is passed as an
// FNSAVE image (32-bit protected-mode layout, SDM vol. 1, 8.1.10 / fig. 8-9);
// a stub loads it with FRSTOR, runs the instruction with its memory operand
// (if any) at a host buffer, and stores it back with the non-waiting FNSAVE,
// so an unmasked exception never traps on the host: it only leaves ES set.
// The host's own x87 state is saved and restored around the call.
// Requires an x86-64 host (the engine's only host today).
#pragma once
#include <cstdint>

#include "cpu/soft/fpu/fpu_state.h"

namespace anykvm::soft::x87 {

constexpr unsigned k_image_size = 108;

// FSW bits (SDM vol. 1, 8.1.3).
namespace sw {
constexpr uint16_t IE = 1u << 0, DE = 1u << 1, ZE = 1u << 2, OE = 1u << 3, UE = 1u << 4, PE = 1u << 5,
                   SF = 1u << 6, ES = 1u << 7, C0 = 1u << 8, C1 = 1u << 9, C2 = 1u << 10, C3 = 1u << 14,
                   B = 1u << 15;
constexpr uint16_t EXC = 0x3f;         // the six exception flags
constexpr uint16_t STICKY = EXC | SF;  // flags that only FNCLEX/FNINIT/loads clear
constexpr uint16_t TOP_SHIFT = 11, TOP_MASK = 7u << 11;
}  // namespace sw

inline unsigned top(const FpuUnit& f) { return (f.fsw >> sw::TOP_SHIFT) & 7; }
// Tag of a non-empty register from its contents (SDM vol. 1, 8.1.7): 00 valid,
// 01 zero, 10 special (NaN, infinity, denormal, unsupported encodings).
unsigned content_tag(const Float80& r);
// Recompute every non-empty tag from the registers (the hardware keeps only
// empty/non-empty internally, as FLDENV/FXRSTOR show).
uint16_t canonical_tags(const FpuUnit& f, uint16_t ftw);
// ES and B follow the unmasked exception flags (hardware derives them on every
// FSW/FCW load).
uint16_t with_summary(uint16_t fsw, uint16_t fcw);

// Image <-> unit. to_image clears the sticky exception flags so the host
// reports only the instruction's new ones; from_image merges them back.
void to_image(const FpuUnit& f, uint8_t img[k_image_size]);
void from_image(FpuUnit& f, const uint8_t img[k_image_size]);

// Runs the instruction `opcode modrm` (opcode D8..DF). For a memory form
// (mod != 3) the operand is `mem` whatever the guest's addressing was. Returns
// the host RFLAGS after the instruction (FCOMI and friends).
uint64_t run(uint8_t opcode, uint8_t modrm, uint8_t img[k_image_size], void* mem);
// FCMOVcc ST(0), ST(i) with the condition already evaluated on guest flags.
uint64_t run_fcmov(bool cond, unsigned i, uint8_t img[k_image_size]);

}  // namespace anykvm::soft::x87
