// Table-driven decoder (SDM vol. 2, ch. 2 instruction format; 2.1.5 ModRM/SIB,
// table 2-1 for 16-bit and 2-2/2-3 for 32-bit addressing). Prefix bytes may
// repeat in any order; the last segment override and the last of F2/F3 win.
// Row selection: for an opcode, the most specific row whose prefix, group and
// ModRM class match (mandatory prefix F2/F3 > 66 > none > legacy rows).
#include "x86/decode/decoder.h"

#include <array>
#include <vector>

namespace anykvm::x86 {
namespace {

constexpr uint8_t k_es = 0, k_cs = 1, k_ss = 2, k_ds = 3, k_fs = 4, k_gs = 5;
constexpr uint8_t k_rbx = 3, k_rsp = 4, k_rbp = 5, k_rsi = 6, k_rdi = 7;

constexpr OpcodeRow k_rows[] = {
#define M1 OpMap::OneByte
#define M2 OpMap::TwoByte
#define X(map, opc, pfx, grp, mn, o1, o2, o3, at) \
  OpcodeRow{map, uint8_t(opc), RowPrefix::pfx, int8_t(grp), mn, {Opnd::o1, Opnd::o2, Opnd::o3}, uint16_t(at)},
#include "x86/decode/opcodes.def"
#undef X
#undef M1
#undef M2
};
constexpr size_t k_nrows = sizeof(k_rows) / sizeof(k_rows[0]);
static_assert(k_nrows < 65535);

// Rows grouped by (map, opcode).
struct Index {
  std::array<uint16_t, 512> first{};
  std::array<uint8_t, 512> count{};
  std::array<bool, 512> modrm{};
  std::vector<uint16_t> rows;
  Index() {
    for (unsigned slot = 0; slot < 512; ++slot) {
      first[slot] = uint16_t(rows.size());
      for (size_t r = 0; r < k_nrows; ++r) {
        const OpcodeRow& row = k_rows[r];
        if (unsigned(row.map) * 256 + row.opcode != slot) continue;
        rows.push_back(uint16_t(r));
        ++count[slot];
        if (row.group >= 0 || (row.attrs & A_MODRM)) modrm[slot] = true;
        for (Opnd o : row.op)
          if (opnd_uses_modrm(o)) modrm[slot] = true;
      }
    }
  }
};
const Index& index() {
  static const Index idx;
  return idx;
}

SimdPrefix to_simd(RowPrefix p) {
  switch (p) {
    case RowPrefix::P66: return SimdPrefix::P66;
    case RowPrefix::PF3: return SimdPrefix::PF3;
    case RowPrefix::PF2: return SimdPrefix::PF2;
    default: return SimdPrefix::None;
  }
}

class Reader {
 public:
  Reader(const uint8_t* b, size_t avail) : m_b(b), m_avail(avail) {}
  // Returns false and sets status when byte `m_pos` is not available.
  bool need(size_t n, DecodeStatus& st) {
    if (m_pos + n > k_max_insn_len) {
      st = DecodeStatus::TooLong;
      return false;
    }
    if (m_pos + n > m_avail) {
      st = DecodeStatus::Truncated;
      m_need = m_pos + n;
      return false;
    }
    return true;
  }
  uint8_t u8() { return m_b[m_pos++]; }
  uint64_t le(unsigned n) {
    uint64_t v = 0;
    for (unsigned k = 0; k < n; ++k) v |= uint64_t(m_b[m_pos + k]) << (8 * k);
    m_pos += n;
    return v;
  }
  size_t pos() const { return m_pos; }
  size_t needed() const { return m_need; }

 private:
  const uint8_t* m_b;
  size_t m_avail;
  size_t m_pos = 0;
  size_t m_need = 0;
};

int64_t sext(uint64_t v, unsigned bytes) {
  unsigned sh = 64 - 8 * bytes;
  return int64_t(v << sh) >> sh;
}

// ModRM (and SIB, displacement) in 16- or 32-bit addressing.
bool decode_modrm(Reader& rd, Insn& in, DecodeStatus& st) {
  if (!rd.need(1, st)) return false;
  in.modrm = rd.u8();
  unsigned mod = in.modrm >> 6, rm = in.modrm & 7;
  in.reg = (in.modrm >> 3) & 7;
  in.has_modrm = true;
  if (mod == 3) {
    in.mem = false;
    in.rm = uint8_t(rm);
    return true;
  }
  in.mem = true;
  bool ss_default = false;
  if (in.addrsize == 2) {
    static constexpr uint8_t bases[8] = {k_rbx, k_rbx, k_rbp, k_rbp, k_rsi, k_rdi, k_rbp, k_rbx};
    static constexpr uint8_t idx[8] = {k_rsi, k_rdi, k_rsi, k_rdi, k_no_reg, k_no_reg, k_no_reg, k_no_reg};
    if (mod == 0 && rm == 6) {
      if (!rd.need(2, st)) return false;
      in.disp = int64_t(rd.le(2));
    } else {
      in.base = bases[rm];
      in.index = idx[rm];
      ss_default = in.base == k_rbp;
      if (mod == 1) {
        if (!rd.need(1, st)) return false;
        in.disp = sext(rd.le(1), 1);
      } else if (mod == 2) {
        if (!rd.need(2, st)) return false;
        in.disp = sext(rd.le(2), 2);
      }
    }
  } else {
    unsigned base = rm;
    bool no_base = false;
    if (rm == 4) {
      if (!rd.need(1, st)) return false;
      uint8_t sib = rd.u8();
      in.scale = sib >> 6;
      unsigned ix = (sib >> 3) & 7;
      in.index = ix == 4 ? k_no_reg : uint8_t(ix);
      base = sib & 7;
      if (base == 5 && mod == 0) no_base = true;
    } else if (rm == 5 && mod == 0) {
      no_base = true;
    }
    if (!no_base) {
      in.base = uint8_t(base);
      ss_default = base == k_rsp || base == k_rbp;
    }
    unsigned dsz = mod == 1 ? 1 : (mod == 2 || no_base) ? 4 : 0;
    if (dsz) {
      if (!rd.need(dsz, st)) return false;
      in.disp = sext(rd.le(dsz), dsz);
    }
  }
  in.seg = in.seg_override != 0xff ? in.seg_override : ss_default ? k_ss : k_ds;
  return true;
}

bool row_matches(const OpcodeRow& r, RowPrefix want, const Insn& in) {
  if (r.prefix != want) return false;
  if (r.group >= 0 && (!in.has_modrm || r.group != in.reg)) return false;
  if ((r.attrs & A_MO) && !in.mem) return false;
  if ((r.attrs & A_RO) && in.mem) return false;
  return true;
}

// Most specific matching row for the collected prefixes.
int select_row(const Index& ix, unsigned slot, const Insn& in, bool p66, uint8_t rep_byte) {
  RowPrefix order[4];
  int n = 0;
  if (rep_byte == 0xf3) order[n++] = RowPrefix::PF3;
  if (rep_byte == 0xf2) order[n++] = RowPrefix::PF2;
  if (p66) order[n++] = RowPrefix::P66;
  order[n++] = RowPrefix::NP;
  order[n++] = RowPrefix::ANY;
  for (int k = 0; k < n; ++k) {
    int best = -1;
    for (unsigned j = 0; j < ix.count[slot]; ++j) {
      uint16_t r = ix.rows[ix.first[slot] + j];
      const OpcodeRow& row = k_rows[r];
      if (!row_matches(row, order[k], in)) continue;
      // A 66/F3/F2 prefix on an opcode that has only a no-prefix SIMD form is
      // #UD (SDM vol. 2, 2.1.2; checked on hardware: 66 0F 77, F3 0F FC, F2 0F 6F).
      if (row.prefix == RowPrefix::NP && (p66 || rep_byte)) continue;
      // A group row beats a group-less one; a row with a ModRM-class
      // restriction beats one without.
      if (best < 0) {
        best = r;
        continue;
      }
      const OpcodeRow& b = k_rows[best];
      int sb = (b.group >= 0) * 2 + ((b.attrs & (A_MO | A_RO)) != 0);
      int sr = (row.group >= 0) * 2 + ((row.attrs & (A_MO | A_RO)) != 0);
      if (sr > sb) best = r;
    }
    if (best >= 0) return best;
  }
  return -1;
}

}  // namespace

std::span<const OpcodeRow> opcode_rows() { return {k_rows, k_nrows}; }

const OpcodeRow& insn_row(const Insn& i) { return k_rows[i.op < k_nrows ? i.op : 0]; }

OpKey insn_key(const Insn& i) {
  OpKey k;
  k.map = i.map;
  k.opcode = i.opcode;
  k.group = i.has_modrm ? int8_t(i.reg & 7) : int8_t(-1);
  const OpcodeRow& r = insn_row(i);
  k.simd = r.prefix != RowPrefix::ANY;
  k.prefix = i.simd;
  k.modrm_class = i.has_modrm ? int8_t(i.mem ? 0 : 1) : int8_t(-1);
  return k;
}

bool insn_ends_block(const Insn& i) { return insn_row(i).attrs & A_END; }

DecodeStatus decode(const uint8_t* bytes, size_t avail, unsigned mode, Insn& out) {
  const Index& ix = index();
  Insn in;
  in.opsize = in.addrsize = mode == 16 ? 2 : 4;
  Reader rd(bytes, avail);
  DecodeStatus st = DecodeStatus::Ok;
  bool p66 = false, p67 = false;
  uint8_t rep_byte = 0;
  auto fail = [&](DecodeStatus s) {
    in.len = uint8_t(s == DecodeStatus::Truncated ? rd.needed() : rd.pos());
    out = in;
    return s;
  };

  // Legacy prefixes (SDM 2.1.1): any order, any count, within 15 bytes.
  uint8_t b;
  for (;;) {
    if (!rd.need(1, st)) return fail(st);
    b = rd.u8();
    switch (b) {
      case 0x66: p66 = true; continue;
      case 0x67: p67 = true; continue;
      case 0x26: in.seg_override = k_es; continue;
      case 0x2e: in.seg_override = k_cs; continue;
      case 0x36: in.seg_override = k_ss; continue;
      case 0x3e: in.seg_override = k_ds; continue;
      case 0x64: in.seg_override = k_fs; continue;
      case 0x65: in.seg_override = k_gs; continue;
      case 0xf0: in.lock = true; continue;
      case 0xf2: case 0xf3: rep_byte = b; continue;
      default: break;
    }
    break;
  }
  if (p66) in.opsize = in.opsize == 2 ? 4 : 2;
  if (p67) in.addrsize = in.addrsize == 2 ? 4 : 2;
  in.seg = in.seg_override != 0xff ? in.seg_override : k_ds;
  in.rep = rep_byte == 0xf3 ? RepPrefix::Rep : rep_byte == 0xf2 ? RepPrefix::Repne : RepPrefix::None;

  in.map = OpMap::OneByte;
  if (b == 0x0f) {
    if (!rd.need(1, st)) return fail(st);
    b = rd.u8();
    in.map = OpMap::TwoByte;
  }
  in.opcode = b;
  unsigned slot = unsigned(in.map) * 256 + b;
  if (ix.count[slot] == 0) return fail(DecodeStatus::Undefined);
  if (ix.modrm[slot] && !decode_modrm(rd, in, st)) return fail(st);

  int r = select_row(ix, slot, in, p66, rep_byte);
  if (r < 0) return fail(DecodeStatus::Undefined);
  const OpcodeRow& row = k_rows[r];
  in.op = uint16_t(r);
  in.simd = to_simd(row.prefix);
  if (row.prefix == RowPrefix::P66 && p66) in.opsize = mode == 16 ? 2 : 4;  // 66 consumed as mandatory
  if (row.prefix == RowPrefix::PF3 || row.prefix == RowPrefix::PF2) in.rep = RepPrefix::None;
  if (row_is_byte(row)) in.opsize = 1;
  // Register-in-opcode forms: the register number goes to reg and rm.
  if (row.op[0] == Opnd::Zb || row.op[0] == Opnd::Zv) in.reg = in.rm = b & 7;

  // Immediates, moffs, far pointers: the first fills imm, a second imm2.
  int nimm = 0;
  auto put_imm = [&](uint64_t v) {
    if (nimm++ == 0) in.imm = v;
    else in.imm2 = v;
  };
  unsigned vsize = in.opsize == 1 ? (mode == 16 ? 2 : 4) : in.opsize;  // Iz/Iv sizes never use 1
  for (Opnd o : row.op) {
    unsigned n = 0;
    bool sign = false;
    switch (o) {
      case Opnd::Ib: n = 1; break;
      case Opnd::Ibs: case Opnd::Jb: n = 1; sign = true; break;
      case Opnd::Iw: n = 2; break;
      case Opnd::Iz: case Opnd::Jz: n = vsize == 2 ? 2 : 4; sign = true; break;
      case Opnd::Iv: n = vsize; break;
      case Opnd::Ap: {
        unsigned off = vsize == 2 ? 2 : 4;
        if (!rd.need(off + 2, st)) return fail(st);
        uint64_t o_ = rd.le(off);
        uint64_t sel = rd.le(2);
        put_imm(o_);
        put_imm(sel);
        continue;
      }
      case Opnd::Ob: case Opnd::Ov: {
        if (!rd.need(in.addrsize, st)) return fail(st);
        in.disp = int64_t(rd.le(in.addrsize));
        in.mem = true;
        continue;
      }
      default: continue;
    }
    if (!rd.need(n, st)) return fail(st);
    uint64_t v = rd.le(n);
    put_imm(sign ? uint64_t(sext(v, n)) : v);
  }
  in.len = uint8_t(rd.pos());

  // LOCK: only lockable rows with a memory destination (SDM vol. 2, LOCK).
  if (in.lock && (!(row.attrs & A_L) || !in.mem)) return fail(DecodeStatus::LockInvalid);
  out = in;
  return DecodeStatus::Ok;
}

}  // namespace anykvm::x86
