// Registration functions of the system area's handler files (exec/system*.cpp),
// called from register_system_handlers in exec/system.cpp.
#pragma once
#include "x86/decode/insn.h"

namespace anykvm::soft {
void register_system_flow(x86::DispatchTable& t);    // system_flow.cpp
void register_system_tables(x86::DispatchTable& t);  // system_tables.cpp
void register_system_cr(x86::DispatchTable& t);      // system_cr.cpp
void register_system_msr(x86::DispatchTable& t);     // system_msr.cpp
}  // namespace anykvm::soft
