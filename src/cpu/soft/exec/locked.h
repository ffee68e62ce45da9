// Atomic LOCK-prefixed instructions and XCHG with memory across vCPUs (locked.cpp).
#pragma once
#include "x86/decode/insn.h"

namespace anykvm::soft::ex {
// Called by bind_handler once a decoded instruction has its handler: a locked
// read-modify-write (or XCHG with memory) gets the atomic wrapper.
void bind_locked(x86::Insn& in);
}  // namespace anykvm::soft::ex
