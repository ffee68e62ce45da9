// Control-register writes with their architectural checks and TLB effects
// (SDM vol. 2 MOV CRn; vol. 3, 2.5 and 4.10.4.1). Shared by MOV CRn, LMSW,
// CLTS and the state-load paths. Each returns false for a #GP(0) condition
// (the caller throws) and leaves state unchanged then.
#pragma once
#include <cstdint>

namespace anykvm::soft {
class Cpu;
bool write_cr0(Cpu& c, uint64_t v);
bool write_cr3(Cpu& c, uint64_t v);
bool write_cr4(Cpu& c, uint64_t v);
// CR4 bits this engine implements (and the guest's CPUID allows).
uint64_t cr4_allowed(const Cpu& c);
}  // namespace anykvm::soft
