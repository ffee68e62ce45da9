// Weak stand-ins for the engine core's pieces (Cpu constructor, lazy-flag
// accessors, the dispatch table) so the system area's unit tests link and run
// before, or without, cpu-core's engine. When the engine's strong definitions
// are linked they take precedence and these are ignored.
#include <map>
#include <tuple>

#include "cpu/soft/cpu.h"
#if __has_include("cpu/soft/soft_vm.h")
#include "cpu/soft/soft_vm.h"
#else
#include "soft_vm_stub.h"
#endif

namespace anykvm::soft {

// Only completes the type for the weak destructor below.
struct Cpu::Private {};

[[gnu::weak]] Cpu::Cpu(SoftVm& v, VcpuId i) : vm(v), id(i) {}
[[gnu::weak]] Cpu::~Cpu() {}

[[gnu::weak]] uint32_t Cpu::eflags() const {
  return (eflags_rest & ~fl::ARITH) | (lf.flags & fl::ARITH) | fl::FIXED1;
}
[[gnu::weak]] void Cpu::set_eflags(uint32_t v) {
  eflags_rest = (v & ~fl::ARITH) | fl::FIXED1;
  lf.op = FlagOp::None;
  lf.flags = v & fl::ARITH;
}
[[gnu::weak]] bool Cpu::get_cf() const { return eflags() & fl::CF; }
[[gnu::weak]] bool Cpu::get_zf() const { return eflags() & fl::ZF; }
[[gnu::weak]] bool Cpu::get_sf() const { return eflags() & fl::SF; }
[[gnu::weak]] bool Cpu::get_of() const { return eflags() & fl::OF; }
[[gnu::weak]] bool Cpu::get_pf() const { return eflags() & fl::PF; }
[[gnu::weak]] bool Cpu::get_af() const { return eflags() & fl::AF; }

}  // namespace anykvm::soft

namespace anykvm::x86 {

struct DispatchTable::Impl {
  std::map<std::tuple<int, int, int, int>, Handler> m;
};
[[gnu::weak]] DispatchTable::DispatchTable() : impl(new Impl) {}
[[gnu::weak]] DispatchTable::~DispatchTable() { delete impl; }
[[gnu::weak]] void DispatchTable::set(const OpKey& k, Handler h) {
  impl->m[{int(k.map), k.opcode, k.group, k.modrm_class}] = h;
}
[[gnu::weak]] void DispatchTable::set(const OpKey& k, const SizedHandler& h) { set(k, h.h32); }
[[gnu::weak]] Handler DispatchTable::lookup(const OpKey& k, uint8_t) const {
  for (int g : {int(k.group), -1})
    for (int mc : {int(k.modrm_class), -1}) {
      auto it = impl->m.find({int(k.map), k.opcode, g, mc});
      if (it != impl->m.end()) return it->second;
    }
  return nullptr;
}

}  // namespace anykvm::x86
