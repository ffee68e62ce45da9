// Placeholder registration; the system area fills it.
#include "cpu/soft/exec/system.h"
#include "cpu/soft/cpu.h"

namespace anykvm::soft {
void register_system_handlers(x86::DispatchTable&) {}
void check_io(Cpu&, uint16_t, unsigned) {}
}  // namespace anykvm::soft
