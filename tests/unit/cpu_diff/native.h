// The native side: runs a BatchImage on the host CPU in a 32-bit
// compatibility-mode code segment (Linux x86-64 user selector 0x23), reached by
// a far call from a 64-bit thunk that lives, with everything else, in one RWX
// region below 4 GiB. Exceptions (SIGFPE for #DE, SIGSEGV, SIGILL, ...) are
// caught on an alternate signal stack; the hardware vector comes from the
// signal context's trap number and the batch resumes at the next case.
#pragma once
#include "diff_case.h"

namespace anykvm::difftest {

class NativeRunner final : public Runner {
 public:
  // The process-wide instance (the region sits at a fixed address).
  static NativeRunner& get();
  const char* name() const override { return "native"; }
  void run(const BatchImage& img, std::vector<Outcome>& out, std::vector<uint8_t>& windows) override;
  uint32_t base() const { return m_base; }
  // False when the host refused an RWX mapping below 4 GiB (the tests skip).
  bool available() const { return m_region != nullptr; }
  // True when the SEL16 LDT segment (layout::SEG16_BASE) is installed: the
  // frames then run with GS = SEL16.
  bool seg16_available() const { return m_seg16; }

 private:
  NativeRunner();
  uint8_t* m_region = nullptr;
  uint32_t m_base = 0;
  bool m_seg16 = false;
};

}  // namespace anykvm::difftest
