// Slow paths of guest memory access: TLB fill, page-crossing splits, writes to
// pages holding decoded code, dirty logging and MMIO exits (DESIGN.md "MMIO is
// an exit, completed on re-entry"; the replay rules are MmioLog's in cpu.h).
// Every guest access ends here or in a TLB entry filled here, and both only
// produce host pointers inside a RamRegion of the current snapshot.
// Leaves out: execution from MMIO (internal-error exit, as KVM's emulator fails).
#include <algorithm>

#include "cpu/soft/cpu.h"
#include "cpu/soft/events/debug.h"
#include "cpu/soft/mmu/mmu.h"
#include "cpu/soft/soft_vm.h"

namespace anykvm::soft {
namespace {

constexpr uint64_t k_off_mask = 0xfff;
constexpr uint64_t k_pg_mask = ~k_off_mask;

void mark_dirty(const cpu::RamRegion& r, uint64_t gpa_page) {
  if (!r.dirty_bitmap) return;
  uint64_t idx = (gpa_page - r.start.raw()) >> 12;
  r.dirty_bitmap[idx / 64].fetch_or(uint64_t(1) << (idx % 64), std::memory_order_relaxed);
}

struct PageRes {
  uint8_t* host = nullptr;  // points at the accessed byte; nullptr = MMIO
  uint64_t gpa = 0;
};

uint64_t mask_lin(const Cpu& c, uint64_t lin) { return c.long_mode() ? lin : uint32_t(lin); }

// Translate one page for `kind`, fill the TLB entry and return where the byte
// at `lin` lives.
PageRes resolve(Cpu& c, uint64_t lin, Access kind, bool user) {
  Translation t = mmu_walk(c, lin, kind, user);
  const cpu::RamRegion* r = mmu_find_region(c, t.gpa);
  if (!r) return {nullptr, t.gpa};
  uint64_t gpa_page = t.gpa & k_pg_mask;
  uint64_t vpage = lin & k_pg_mask;
  uint8_t* host_page = r->hva + (gpa_page - r->start.raw());

  TlbEntry& e = c.tlb.entry(user, lin);
  e = TlbEntry{};
  e.gpa_page = gpa_page;
  e.addend = uintptr_t(host_page) - uintptr_t(vpage);
  TlbCold& ce = c.tlb.cold_entry(user, lin);
  ce.vpage = vpage;
  ce.global = t.global;
  ce.large_mask = t.page_mask;
  if (t.page_mask != k_pg_mask) c.tlb.have_large = true;
  bool watched = c.tlb.watch_data && debug_page_watched(c, vpage);
  if (!watched) e.tag_read = vpage;
  if (t.exec_ok) e.tag_exec = vpage;
  if (t.write_ok && !r->readonly && !watched && !c.vm.is_code_page(gpa_page >> 12)) {
    // Dirty logging at fill time: the log's reset bumps the map generation,
    // which flushes this entry (memory.h).
    mark_dirty(*r, gpa_page);
    e.tag_write = vpage;
  }
  if (kind == Access::Write && r->readonly) return {nullptr, t.gpa};
  return {host_page + (t.gpa & k_off_mask), t.gpa};
}

// An access split at page boundaries. Accesses are at most one page long, so
// there are at most two parts.
struct Parts {
  PageRes res[2];
  uint32_t len[2] = {0, 0};
  uint64_t lin[2] = {0, 0};
  int n = 0;
};

Parts split_resolve(Cpu& c, uint64_t lin, uint32_t len, Access kind, bool user) {
  Parts p;
  lin = mask_lin(c, lin);
  uint32_t first = uint32_t(std::min<uint64_t>(len, 4096 - (lin & k_off_mask)));
  p.lin[0] = lin;
  p.len[0] = first;
  p.n = 1;
  if (first < len) {
    p.lin[1] = mask_lin(c, lin + first);
    p.len[1] = len - first;
    p.n = 2;
  }
  // Translate every part before touching anything, so a fault on the second
  // page leaves the first unmodified.
  for (int i = 0; i < p.n; ++i) p.res[i] = resolve(c, p.lin[i], kind, user);
  return p;
}

void mmio_range(Cpu& c, uint64_t gpa, uint8_t* data, uint32_t len, bool write) {
  while (len) {
    uint32_t piece = std::min<uint32_t>(len, 8);
    mmu_mmio(c, gpa, data, piece, write);
    gpa += piece;
    data += piece;
    len -= piece;
  }
}

[[noreturn]] void internal_error_exit(Cpu& c) {
  c.exit = cpu::VcpuExit{};
  c.exit.reason = cpu::ExitReason::InternalError;
  c.exit.internal.suberror = cpu::InternalSuberror::Emulation;
  c.exit.internal.ndata = 0;
  c.exit_pending = true;
  throw StopInsn{};
}

}  // namespace

[[noreturn]] void mmu_segment_fault(Cpu& c, uint8_t s) {
  throw fault(s == k_seg_ss ? Vec::SS : Vec::GP, 0);
}

void mmu_sync(Cpu& c) {
  uint64_t g = c.vm.memory.generation();
  if (g == c.tlb.generation && c.tlb.map) return;
  // Generation first: publish() stores the map before bumping, so the snapshot
  // taken next is at least as new as `g`.
  c.tlb.map = c.vm.memory.snapshot();
  c.tlb.generation = g;
  c.tlb.flush_all();
}

void mmu_state_loaded(Cpu& c) {
  c.tlb.flush_all();
  if (c.paging() && (c.cr4 & cr4::PAE) && !c.long_mode()) mmu_load_pdptes(c);
  debug_dr7_changed(c);
}

const cpu::RamRegion* mmu_find_region(Cpu& c, uint64_t gpa) {
  if (!c.tlb.map) mmu_sync(c);
  return c.tlb.map->find(Gpa(gpa));
}

void mmu_read_slow(Cpu& c, uint64_t lin, void* buf, uint32_t len, bool user) {
  if (len == 0) return;
  if (len > 4096) internal_error_exit(c);
  Parts p = split_resolve(c, lin, len, Access::Read, user);
  if (c.tlb.watch_data) debug_data_access(c, mask_lin(c, lin), len, false);
  uint8_t* out = static_cast<uint8_t*>(buf);
  for (int i = 0; i < p.n; ++i) {
    if (p.res[i].host) std::memcpy(out, p.res[i].host, p.len[i]);
    else mmio_range(c, p.res[i].gpa, out, p.len[i], false);
    out += p.len[i];
  }
}

void mmu_write_slow(Cpu& c, uint64_t lin, const void* buf, uint32_t len, bool user) {
  if (len == 0) return;
  if (len > 4096) internal_error_exit(c);
  Parts p = split_resolve(c, lin, len, Access::Write, user);
  if (c.tlb.watch_data) debug_data_access(c, mask_lin(c, lin), len, true);
  const uint8_t* in = static_cast<const uint8_t*>(buf);
  for (int i = 0; i < p.n; ++i) {
    if (p.res[i].host) {
      std::memcpy(p.res[i].host, in, p.len[i]);
      uint64_t gpa_page = p.res[i].gpa & k_pg_mask;
      if (const cpu::RamRegion* r = mmu_find_region(c, gpa_page)) mark_dirty(*r, gpa_page);
      if (c.vm.is_code_page(gpa_page >> 12)) c.vm.on_code_write(gpa_page >> 12, p.res[i].gpa, p.len[i]);
    } else {
      uint8_t tmp[4096];
      std::memcpy(tmp, in, p.len[i]);
      mmio_range(c, p.res[i].gpa, tmp, p.len[i], true);
    }
    in += p.len[i];
  }
}

void mmu_mmio(Cpu& c, uint64_t gpa, uint8_t* data, uint32_t len, bool write) {
  MmioLog& log = c.mmio_log;
  if (log.cursor < log.count) {
    MmioLog::Op& op = log.ops[log.cursor];
    if (op.gpa == gpa && op.len == len && op.write == write) {
      if (!write) {
        if (!op.done) throw StopInsn{};  // data not delivered yet
        std::memcpy(data, op.data, len);
      }
      ++log.cursor;
      return;
    }
    // The re-executed instruction took another path (another vCPU changed its
    // inputs): forget the stale tail and continue with fresh operations.
    log.count = log.cursor;
  }
  if (log.posted_write_pending) throw StopInsn{};  // exit reports the posted write first
  if (log.count == log.ops.size()) internal_error_exit(c);
  MmioLog::Op& op = log.ops[log.count++];
  log.cursor = log.count;
  op = MmioLog::Op{};
  op.gpa = gpa;
  op.len = uint8_t(len);
  op.write = write;
  op.done = write;
  if (c.local && len <= 8 && c.local->mmio(gpa, len, write, data)) [[unlikely]] {
    // An in-kernel device (IOAPIC, LAPIC, ioeventfd) took it: logged as done
    // so a re-executed instruction replays it instead of repeating it.
    op.done = true;
    std::memcpy(op.data, data, len);
    if (write && c.local->take_exit(c.exit)) c.exit_pending = true;
    return;
  }
  c.exit = cpu::VcpuExit{};
  c.exit.reason = cpu::ExitReason::Mmio;
  c.exit.mmio.gpa = gpa;
  c.exit.mmio.len = len;
  c.exit.mmio.is_write = write;
  if (!write) throw StopInsn{};
  std::memcpy(op.data, data, len);
  std::memcpy(c.exit.mmio.data, data, len);
  log.posted_write_pending = true;
  c.exit_pending = true;
}

void mmio_reenter(Cpu& c) {
  c.mmio_log.cursor = 0;
  c.mmio_log.posted_write_pending = false;
}

void mmio_complete_read(Cpu& c, std::span<const uint8_t> data) {
  MmioLog& log = c.mmio_log;
  if (log.count == 0) return;
  MmioLog::Op& op = log.ops[log.count - 1];
  if (op.write || op.done) return;
  std::memcpy(op.data, data.data(), std::min<size_t>(op.len, data.size()));
  op.done = true;
}

// ---- Cpu services ----

// Offset -> linear address with the limit and type checks of the current mode.
// Faults: #SS(0) for SS, #GP(0) otherwise.
uint64_t mmu_seg_linear_full(Cpu& c, uint8_t s, uint64_t off, uint32_t len, bool write) {
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


// A range inside one page whose TLB entry already allows the access needs no
// walk: the entry is left as it is. (exec/locked.cpp points the entry at a
// scratch copy while a LOCKed handler runs; a refill here would send the
// handler's accesses, e.g. CMPXCHG8B's, around it to guest memory.)
namespace {
bool tlb_allows(Cpu& c, uint64_t lin, uint32_t len, bool write) {
  lin = mask_lin(c, lin);
  const uint64_t page = lin & k_pg_mask;
  if (((lin + len - 1) & k_pg_mask) != page) return false;
  const TlbEntry& e = c.tlb.entry(c.cpl == 3, lin);
  return (write ? e.tag_write : e.tag_read) == page;
}
}  // namespace

void Cpu::check_read(uint8_t s, uint64_t offset, uint32_t len) {
  uint64_t lin = mmu_seg_linear(*this, s, offset, len, false);
  if (len && !tlb_allows(*this, lin, len, false))
    split_resolve(*this, lin, std::min<uint32_t>(len, 4096), Access::Read, cpl == 3);
}

void Cpu::check_write(uint8_t s, uint64_t offset, uint32_t len) {
  uint64_t lin = mmu_seg_linear(*this, s, offset, len, true);
  if (len && !tlb_allows(*this, lin, len, true))
    split_resolve(*this, lin, std::min<uint32_t>(len, 4096), Access::Write, cpl == 3);
}

size_t Cpu::fetch_code(uint64_t lin, uint8_t* buf, size_t n) {
  const Segment& cs = seg[1];
  if (!(long_mode() && cs.l)) {
    // CS limit (SDM vol. 3, 5.3): #GP(0) when the first byte is outside.
    uint64_t eip = uint32_t(lin - cs.base);
    if (eip > cs.limit) throw fault(Vec::GP, 0);
    n = std::min<uint64_t>(n, uint64_t(cs.limit) - eip + 1);
    lin = uint32_t(lin);
  }
  bool user = cpl == 3;
  size_t done = 0;
  while (done < n) {
    uint64_t a = mask_lin(*this, lin + done);
    size_t chunk = std::min<size_t>(n - done, 4096 - (a & k_off_mask));
    const TlbEntry& e = tlb.entry(user, a);
    const uint8_t* src;
    if (e.tag_exec == (a & k_pg_mask)) {
      src = reinterpret_cast<const uint8_t*>(uintptr_t(a) + e.addend);
    } else {
      PageRes r;
      if (done == 0) {
        r = resolve(*this, a, Access::Exec, user);
      } else {
        try {
          r = resolve(*this, a, Access::Exec, user);
        } catch (const Fault&) {
          break;  // the decoder faults only if it needs these bytes
        }
      }
      if (!r.host) {
        if (done == 0) internal_error_exit(*this);
        break;
      }
      src = r.host;
    }
    std::memcpy(buf + done, src, chunk);
    done += chunk;
  }
  return done;
}

uint64_t mmu_code_gpa_slow(Cpu& c, uint64_t lin) {
  lin = mask_lin(c, lin);
  bool user = c.cpl == 3;
  PageRes r = resolve(c, lin, Access::Exec, user);
  return r.host ? r.gpa : ~uint64_t(0);
}

uint64_t Cpu::translate(uint64_t lin, bool write, bool user, bool exec) {
  Access kind = exec ? Access::Exec : write ? Access::Write : Access::Read;
  return mmu_walk(*this, mask_lin(*this, lin), kind, user).gpa;
}

uint8_t* Cpu::phys_ptr(uint64_t gpa, bool write) {
  const cpu::RamRegion* r = mmu_find_region(*this, gpa);
  if (!r || (write && r->readonly)) return nullptr;
  if (write) {
    mark_dirty(*r, gpa & k_pg_mask);
    if (vm.is_code_page(gpa >> 12)) vm.on_code_write(gpa >> 12);
  }
  return r->hva + (gpa - r->start.raw());
}

void Cpu::tlb_flush_all() { tlb.flush_all(); }
void Cpu::tlb_flush_nonglobal() { tlb.flush_nonglobal(); }
void Cpu::tlb_flush_page(uint64_t lin) { tlb.flush_page(mask_lin(*this, lin)); }

}  // namespace anykvm::soft
