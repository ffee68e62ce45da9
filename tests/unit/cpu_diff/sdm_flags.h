// Flag facts from the SDM that more than one family needs: which status flags
// a shift/rotate defines for a given count ("SAL/SAR/SHL/SHR", "RCL/RCR/ROL/
// ROR"), and which flags each condition code reads (vol. 1, appendix B).
#pragma once
#include "diff_case.h"

namespace anykvm::difftest {

enum Grp2 : unsigned { ROL = 0, ROR = 1, RCL = 2, RCR = 3, SHL = 4, SHR = 5, SAL_ALIAS = 6, SAR = 7 };
constexpr uint32_t k_count_mask = 0x1f;  // counts are masked to 5 bits (no REX.W here)

// Status flags defined after a shift/rotate of `bits` by `count` (unaffected = defined).
inline uint32_t shift_defined_flags(Grp2 ext, unsigned bits, uint32_t count) {
  uint32_t c = count & k_count_mask;
  if (c == 0) return fl::STATUS;  // flags unaffected
  uint32_t d = fl::STATUS;
  if (c != 1) d &= ~fl::OF;
  if (ext == ROL || ext == ROR || ext == RCL || ext == RCR) return d;  // SF ZF AF PF unaffected
  d &= ~fl::AF;
  if ((ext == SHL || ext == SAL_ALIAS || ext == SHR) && c >= bits) d &= ~fl::CF;
  return d;
}

// Flags read by condition code cc (the low nibble of Jcc/SETcc/CMOVcc).
inline uint32_t condition_reads(unsigned cc) {
  static const uint32_t reads[8] = {fl::OF, fl::CF, fl::ZF, fl::CF | fl::ZF,
                                    fl::SF, fl::PF, fl::SF | fl::OF, fl::ZF | fl::SF | fl::OF};
  return reads[(cc >> 1) & 7];
}

}  // namespace anykvm::difftest
