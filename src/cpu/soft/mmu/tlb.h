// Placeholder: mmu/ (system helper) defines the software TLB here.
#pragma once
namespace anykvm::soft {
struct Tlb {};
}
