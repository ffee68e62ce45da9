// Inline fast paths of the guest memory services (included at the end of
// cpu.h): segment check (SDM vol. 3, 5.3 limit checking, 5.4 type checking)
// then one software-TLB tag compare and a host load/store. Misses, page
// crossings, MMIO, code pages and watched pages go to mmu/access.cpp.
// Not modelled: alignment checking (#AC), 64-bit canonical checks.
#pragma once
#include <cstring>

namespace anykvm::soft {

// ---- slow paths (mmu/access.cpp) ----
void mmu_read_slow(Cpu& c, uint64_t lin, void* buf, uint32_t len, bool user);
void mmu_write_slow(Cpu& c, uint64_t lin, const void* buf, uint32_t len, bool user);
[[noreturn]] void mmu_segment_fault(Cpu& c, uint8_t seg);

constexpr uint8_t k_seg_ss = 2;

// Segment type bits (SDM vol. 3, 3.4.5.1) as stored in Segment::type.
namespace segtype {
constexpr uint8_t Accessed = 1, Writable = 2 /*data*/, Readable = 2 /*code*/, ExpandDown = 4 /*data*/,
                  Conforming = 4 /*code*/, Code = 8;
}

// Offset -> linear address with the limit and type checks of the current mode.
// Faults: #SS(0) for SS, #GP(0) otherwise.
inline uint64_t mmu_seg_linear(Cpu& c, uint8_t s, uint64_t off, uint32_t len, bool write) {
  const Segment& sg = c.seg[s];
  if (c.long_mode() && c.seg[1].l) {
    return (s >= 4 ? sg.base : 0) + off;  // 64-bit mode: no limits, only FS/GS bases
  }
  if (c.protected_mode() && !c.v86()) {
    if (sg.unusable) mmu_segment_fault(c, s);
    if (write) {
      if ((sg.type & (segtype::Code | segtype::Writable)) != segtype::Writable) mmu_segment_fault(c, s);
    } else if ((sg.type & (segtype::Code | segtype::Readable)) == segtype::Code) {
      mmu_segment_fault(c, s);
    }
  }
  uint64_t last = off + len - 1;
  if ((sg.type & (segtype::Code | segtype::ExpandDown)) == segtype::ExpandDown) {
    uint64_t upper = sg.db ? 0xffffffffull : 0xffffull;
    if (off <= sg.limit || last > upper) mmu_segment_fault(c, s);
  } else if (last > sg.limit) {
    mmu_segment_fault(c, s);
  }
  return uint32_t(sg.base + off);
}

template <typename T>
inline T Cpu::read_linear(uint64_t lin, bool user) {
  static_assert(std::is_trivially_copyable_v<T>);
  const TlbEntry& e = tlb.entry(user, lin);
  T v;
  if (e.tag_read == (lin & ~uint64_t(0xfff)) && (lin & 0xfff) <= 4096 - sizeof(T)) [[likely]] {
    std::memcpy(&v, reinterpret_cast<const void*>(uintptr_t(lin) + e.addend), sizeof(T));
  } else {
    mmu_read_slow(*this, lin, &v, sizeof(T), user);
  }
  return v;
}

template <typename T>
inline void Cpu::write_linear(uint64_t lin, T value, bool user) {
  static_assert(std::is_trivially_copyable_v<T>);
  const TlbEntry& e = tlb.entry(user, lin);
  if (e.tag_write == (lin & ~uint64_t(0xfff)) && (lin & 0xfff) <= 4096 - sizeof(T)) [[likely]] {
    std::memcpy(reinterpret_cast<void*>(uintptr_t(lin) + e.addend), &value, sizeof(T));
  } else {
    mmu_write_slow(*this, lin, &value, sizeof(T), user);
  }
}

template <typename T>
inline T Cpu::read(uint8_t s, uint64_t offset) {
  uint64_t lin = mmu_seg_linear(*this, s, offset, sizeof(T), false);
  return read_linear<T>(lin, cpl == 3);
}

template <typename T>
inline void Cpu::write(uint8_t s, uint64_t offset, T value) {
  uint64_t lin = mmu_seg_linear(*this, s, offset, sizeof(T), true);
  write_linear<T>(lin, value, cpl == 3);
}

}  // namespace anykvm::soft
