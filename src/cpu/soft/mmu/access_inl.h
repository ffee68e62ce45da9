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

// Offset -> linear address with the limit and type checks of the current mode
// (every case; mmu/access.cpp). Faults: #SS(0) for SS, #GP(0) otherwise.
uint64_t mmu_seg_linear_full(Cpu& c, uint8_t s, uint64_t off, uint32_t len, bool write);

// Segment types (by Segment::type) that pass the type check for a read /
// a write and are not expand-down: data 0-3 (writes: 2, 3), readable code
// (A, B, E, F).
constexpr uint16_t k_seg_fast_read = 0b1100'1100'0000'1111;
constexpr uint16_t k_seg_fast_write = 0b0000'0000'0000'1100;

// Outside 64-bit mode, a usable segment of such a type with the access inside
// its limit needs none of the other checks in any mode (real, v86, protected):
// they could only fault or take the expand-down path. Everything else takes
// the full check.
[[gnu::always_inline]] inline uint64_t mmu_seg_linear(Cpu& c, uint8_t s, uint64_t off, uint32_t len, bool write) {
  const Segment& sg = c.seg[s];
  const uint16_t ok_types = write ? k_seg_fast_write : k_seg_fast_read;
  if (!c.long_mode() && !sg.unusable && ((ok_types >> (sg.type & 0xf)) & 1) && off + len - 1 <= sg.limit) [[likely]]
    return uint32_t(sg.base + off);
  return mmu_seg_linear_full(c, s, off, len, write);
}

template <typename T>
[[gnu::always_inline]] inline T Cpu::read_linear(uint64_t lin, bool user) {
  static_assert(std::is_trivially_copyable_v<T>);
  const TlbEntry& e = tlb.entry(user, lin);
  T v;
  // One compare covers the page-crossing test: the page of the last byte
  // equals this entry's tag only when the access stays in the entry's page (the
  // next page has another index).
  if (e.tag_read == ((lin + (sizeof(T) - 1)) & ~uint64_t(0xfff))) [[likely]] {
    std::memcpy(&v, reinterpret_cast<const void*>(uintptr_t(lin) + e.addend), sizeof(T));
  } else {
    mmu_read_slow(*this, lin, &v, sizeof(T), user);
  }
  return v;
}

template <typename T>
[[gnu::always_inline]] inline void Cpu::write_linear(uint64_t lin, T value, bool user) {
  static_assert(std::is_trivially_copyable_v<T>);
  const TlbEntry& e = tlb.entry(user, lin);
  if (e.tag_write == ((lin + (sizeof(T) - 1)) & ~uint64_t(0xfff))) [[likely]] {
    std::memcpy(reinterpret_cast<void*>(uintptr_t(lin) + e.addend), &value, sizeof(T));
  } else {
    mmu_write_slow(*this, lin, &value, sizeof(T), user);
  }
}

template <typename T>
[[gnu::always_inline]] inline T Cpu::read(uint8_t s, uint64_t offset) {
  uint64_t lin = mmu_seg_linear(*this, s, offset, sizeof(T), false);
  return read_linear<T>(lin, cpl == 3);
}

template <typename T>
[[gnu::always_inline]] inline void Cpu::write(uint8_t s, uint64_t offset, T value) {
  uint64_t lin = mmu_seg_linear(*this, s, offset, sizeof(T), true);
  write_linear<T>(lin, value, cpl == 3);
}

}  // namespace anykvm::soft
