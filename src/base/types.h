// Strong types for addresses, ports and units that cross folder boundaries.
// A raw uint64_t address crossing a layer is a smell (DESIGN.md, style 3); these
// wrappers cost nothing at run time and make Gpa/Gva/Hva mix-ups compile errors.
#pragma once
#include <compare>
#include <cstdint>

namespace anykvm {

template <typename Tag, typename Rep>
struct Strong {
  Rep value{};
  constexpr Strong() = default;
  constexpr explicit Strong(Rep v) : value(v) {}
  constexpr Rep raw() const { return value; }
  constexpr auto operator<=>(const Strong&) const = default;
  constexpr Strong operator+(Rep d) const { return Strong(value + d); }
  constexpr Rep operator-(Strong o) const { return value - o.value; }
};

struct GpaTag {};
struct GvaTag {};
struct PortTag {};
struct VectorTag {};
struct GsiTag {};
struct VcpuIdTag {};

using Gpa = Strong<GpaTag, uint64_t>;       // guest-physical address
using Gva = Strong<GvaTag, uint64_t>;       // guest-linear (virtual) address
using Port = Strong<PortTag, uint16_t>;     // x86 I/O port
using Vector = Strong<VectorTag, uint8_t>;  // interrupt vector
using Gsi = Strong<GsiTag, uint32_t>;       // global system interrupt
using VcpuId = Strong<VcpuIdTag, uint32_t>; // KVM vCPU id (= APIC id)

// A host virtual address inside a memslot's backing.
using Hva = uint8_t*;

struct Nanoseconds {
  int64_t value{};
  constexpr auto operator<=>(const Nanoseconds&) const = default;
};

constexpr uint64_t k_page_size = 4096;
constexpr uint64_t k_page_mask = ~(k_page_size - 1);

}  // namespace anykvm
