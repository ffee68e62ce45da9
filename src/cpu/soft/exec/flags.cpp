// Cpu's EFLAGS accessors over the lazy flags (flags_inl.h). Out of line so the
// system area's unit tests may supply stand-ins; hot paths use the inline
// lazy_* helpers instead.
#include "cpu/soft/cpu.h"

namespace anykvm::soft {

uint32_t Cpu::eflags() const { return (eflags_rest & ~fl::ARITH) | lazy_arith_flags(lf) | fl::FIXED1; }

void Cpu::set_eflags(uint32_t v) {
  eflags_rest = (v & ~fl::ARITH) | fl::FIXED1;
  set_flags_materialized(*this, v);
}

bool Cpu::get_cf() const { return lazy_cf(lf); }
bool Cpu::get_zf() const { return lazy_zf(lf); }
bool Cpu::get_sf() const { return lazy_sf(lf); }
bool Cpu::get_of() const { return lazy_of(lf); }
bool Cpu::get_pf() const { return lazy_pf(lf); }
bool Cpu::get_af() const { return lazy_arith_flags(lf) & fl::AF; }
void Cpu::set_cf(bool v) { lazy_set_cf(*this, v); }

}  // namespace anykvm::soft
