// The process-wide dispatch table (insn.h) filled from every area's
// registration (integer exec/, system exec/system*, fpu/), and the binding of a
// decoded instruction to its handler, including the handlers for encodings the
// decoder rejects (#UD, #GP for > 15 bytes) and for opcodes nobody implements
// (KVM_EXIT_INTERNAL_ERROR, emulation suberror, with the instruction bytes).
// Binding also swaps in a handler specialized for the decoded form when the
// area registered one (add_specializer: ModRM operand forms, Jcc conditions).
#include "cpu/soft/dispatch.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "cpu/soft/cpu.h"
#include "cpu/soft/exec/common.h"
#include "cpu/soft/exec/locked.h"
#include "cpu/soft/exec/system.h"
#include "cpu/soft/fpu/fpu.h"

namespace anykvm::soft::ex {
namespace {
// Filled while dispatch_table() is built (under its static-init guard), read-only after.
std::unordered_map<x86::Handler, Specializer>& specializers() {
  static std::unordered_map<x86::Handler, Specializer> m;
  return m;
}
// Two registered handlers the compiler folded into one address (identical
// code) would share an entry: such a handler keeps its generic form.
x86::Handler no_specialization(const Insn&) { return nullptr; }
}  // namespace

void add_specializer(x86::Handler generic, Specializer s) {
  auto [it, fresh] = specializers().emplace(generic, s);
  if (!fresh && it->second != s) it->second = no_specialization;
}
}  // namespace anykvm::soft::ex

namespace anykvm::x86 {

const DispatchTable& dispatch_table() {
  // Later registrations replace earlier ones for the same key, so the system
  // and FPU areas may override the integer defaults (e.g. FWAIT).
  static const DispatchTable* t = [] {
    auto* d = new DispatchTable;
    soft::register_exec_handlers(*d);
    soft::register_system_handlers(*d);
    soft::register_fpu_handlers(*d);
    return d;
  }();
  return *t;
}

}  // namespace anykvm::x86

namespace anykvm::soft {

void h_undefined(Cpu&, const Insn&) { throw fault(Vec::UD); }
void h_too_long(Cpu&, const Insn&) { throw fault(Vec::GP, 0); }

void h_unimplemented(Cpu& c, const Insn& i) {
  uint8_t bytes[16] = {};
  uint64_t lin = c.seg[1].base + c.rip;
  size_t n = 0;
  try {
    n = c.fetch_code(lin, bytes, std::min<size_t>(i.len, 15));
  } catch (...) {
    n = 0;
  }
  c.exit = cpu::VcpuExit{};
  c.exit.reason = cpu::ExitReason::InternalError;
  c.exit.internal.suberror = cpu::InternalSuberror::Emulation;
  c.exit.internal.data[0] = i.len;
  std::memcpy(&c.exit.internal.data[1], bytes, n);
  c.exit.internal.ndata = uint32_t(1 + (n + 7) / 8);
  c.exit_pending = true;  // RIP stays at the instruction
}

void bind_handler(Insn& in, x86::DecodeStatus st) {
  switch (st) {
    case x86::DecodeStatus::Ok: {
      x86::Handler h = x86::dispatch_table().lookup(x86::insn_key(in), in.opsize);
      in.fn = h ? h : h_unimplemented;
      if (h) {
        const auto& sp = ex::specializers();
        if (auto it = sp.find(h); it != sp.end())
          if (x86::Handler v = it->second(in)) in.fn = v;
      }
      if (h) ex::bind_locked(in);  // LOCK / XCHG m: atomic across vCPUs (exec/locked.cpp)
      break;
    }
    case x86::DecodeStatus::TooLong: in.fn = h_too_long; break;
    default: in.fn = h_undefined; break;
  }
}

bool bound_to_opcode_handler(const x86::Insn& in) {
  return in.fn && in.fn != h_unimplemented && in.fn != h_too_long && in.fn != h_undefined;
}

void register_exec_handlers(x86::DispatchTable& t) {
  ex::register_alu(t);
  ex::register_muldiv(t);
  ex::register_bits(t);
  ex::register_data(t);
  ex::register_stack(t);
  ex::register_control(t);
  ex::register_string(t);
  ex::register_io(t);
  ex::register_bcd(t);
  ex::register_misc(t);
}

}  // namespace anykvm::soft
