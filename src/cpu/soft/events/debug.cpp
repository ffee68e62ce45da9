// Placeholder; the system area fills it.
#include "cpu/soft/events/debug.h"
#include "cpu/soft/cpu.h"
namespace anykvm::soft {
bool debug_active(const Cpu&) { return false; }
void debug_before_insn(Cpu&) {}
void debug_after_insn(Cpu&, bool) {}
}  // namespace anykvm::soft
