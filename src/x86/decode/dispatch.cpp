// DispatchTable: the registrations of every area (exec, system, fpu) and the
// lookup the decoder-side binding uses. Registration happens once at start-up
// and lookup once per decoded instruction, so a flat list per (map, opcode)
// scanned for the most specific match is enough.
// Specificity: a registration matches when each field it specifies equals the
// instruction's; among matches, mandatory prefix > group > ModRM class.
#include <array>
#include <vector>

#include "x86/decode/insn.h"

namespace anykvm::x86 {

struct DispatchTable::Impl {
  struct Entry {
    OpKey key;
    SizedHandler h;
  };
  std::array<std::vector<Entry>, 1024> slots;  // (map, opcode)
};

namespace {
unsigned slot_of(const OpKey& k) { return unsigned(k.map) * 256 + k.opcode; }
bool same_key(const OpKey& a, const OpKey& b) {
  return a.map == b.map && a.opcode == b.opcode && a.group == b.group && a.simd == b.simd &&
         (!a.simd || a.prefix == b.prefix) && a.modrm_class == b.modrm_class;
}
int score(const OpKey& k) { return (k.simd ? 4 : 0) + (k.group >= 0 ? 2 : 0) + (k.modrm_class >= 0 ? 1 : 0); }
}  // namespace

DispatchTable::DispatchTable() : impl(new Impl) {}
DispatchTable::~DispatchTable() { delete impl; }

void DispatchTable::set(const OpKey& key, Handler h) { set(key, SizedHandler{h, h, h, h}); }

void DispatchTable::set(const OpKey& key, const SizedHandler& h) {
  auto& v = impl->slots[slot_of(key)];
  for (auto& e : v) {
    if (same_key(e.key, key)) {
      e.h = h;  // a later registration replaces an earlier one
      return;
    }
  }
  v.push_back({key, h});
}

Handler DispatchTable::lookup(const OpKey& exact, uint8_t opsize) const {
  const auto& v = impl->slots[slot_of(exact)];
  const Impl::Entry* best = nullptr;
  for (const auto& e : v) {
    const OpKey& k = e.key;
    if (k.simd && (!exact.simd || k.prefix != exact.prefix)) continue;
    if (k.group >= 0 && k.group != exact.group) continue;
    if (k.modrm_class >= 0 && k.modrm_class != exact.modrm_class) continue;
    if (!best || score(k) > score(best->key)) best = &e;
  }
  if (!best) return nullptr;
  switch (opsize) {
    case 1: return best->h.h8;
    case 2: return best->h.h16;
    case 8: return best->h.h64;
    default: return best->h.h32;
  }
}

}  // namespace anykvm::x86
