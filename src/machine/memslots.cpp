// KVM_SET_USER_MEMORY_REGION / KVM_GET_DIRTY_LOG semantics; see memslots.h.
#include "machine/memslots.h"

#include <algorithm>
#include <cerrno>

namespace anykvm::machine {

namespace {
constexpr uint64_t k_page = 4096;
constexpr uint64_t k_max_pages = uint64_t(1) << 31;  // KVM_MEM_MAX_NR_PAGES
}  // namespace

Result<void> MemSlots::set(const MemoryRegionRequest& r) {
  if (r.flags & ~uint32_t(k_mem_log_dirty_pages | k_mem_readonly)) return err(EINVAL);
  const uint32_t as_id = r.slot >> 16;
  const uint32_t id = r.slot & 0xffff;
  if ((r.memory_size & (k_page - 1)) || (r.guest_phys_addr & (k_page - 1))) return err(EINVAL);
  if ((r.userspace_addr & (k_page - 1))) return err(EINVAL);
  // access_ok(): the range must be a user address range (TASK_SIZE_MAX), also
  // for a delete.
  constexpr uint64_t k_task_size_max = 0x00007ffffffff000ull;
  if (r.memory_size > k_task_size_max || r.userspace_addr > k_task_size_max - r.memory_size) return err(EINVAL);
  if (as_id >= k_address_spaces || id >= k_user_mem_slots) return err(EINVAL);
  if (r.guest_phys_addr + r.memory_size < r.guest_phys_addr) return err(EINVAL);
  if ((r.memory_size / k_page) > k_max_pages) return err(EINVAL);

  std::lock_guard<std::mutex> g(m_lock);
  auto& slots = m_slots[as_id];
  auto it = slots.find(id);
  if (r.memory_size == 0) {  // delete
    if (it == slots.end()) return err(EINVAL);
    if (it->second.dirty) m_retired.push_back(it->second.dirty);
    slots.erase(it);
    publish_locked();
    return {};
  }
  bool create_or_move = true;
  if (it != slots.end()) {
    const Slot& old = it->second;
    if (r.userspace_addr != old.uaddr || r.memory_size != old.size ||
        ((r.flags ^ old.flags) & k_mem_readonly))
      return err(EINVAL);
    if (r.guest_phys_addr == old.gpa) {
      if (r.flags == old.flags) return {};
      create_or_move = false;  // flags only
    }
  }
  if (create_or_move) {
    for (const auto& [oid, s] : slots) {
      if (oid == id) continue;
      if (r.guest_phys_addr < s.gpa + s.size && s.gpa < r.guest_phys_addr + r.memory_size) return err(EEXIST);
    }
  }
  Slot s;
  s.gpa = r.guest_phys_addr;
  s.size = r.memory_size;
  s.uaddr = r.userspace_addr;
  s.flags = r.flags;
  if (r.flags & k_mem_log_dirty_pages) {
    if (it != slots.end() && it->second.dirty && !create_or_move) {
      s.dirty = it->second.dirty;
      s.dirty_words = it->second.dirty_words;
    } else {
      s.dirty_words = (s.size / k_page + 63) / 64;
      s.dirty = std::shared_ptr<std::atomic<uint64_t>[]>(new std::atomic<uint64_t>[s.dirty_words]());
    }
  }
  if (it != slots.end() && it->second.dirty && it->second.dirty != s.dirty) m_retired.push_back(it->second.dirty);
  slots[id] = std::move(s);
  publish_locked();
  return {};
}

void MemSlots::publish_locked() {
  auto map = std::make_shared<cpu::MemoryMap>();
  for (const auto& [id, s] : m_slots[0]) {
    cpu::RamRegion rr;
    rr.start = Gpa(s.gpa);
    rr.size = s.size;
    rr.hva = reinterpret_cast<uint8_t*>(s.uaddr);
    rr.readonly = s.flags & k_mem_readonly;
    rr.dirty_bitmap = s.dirty.get();
    map->regions.push_back(rr);
  }
  std::sort(map->regions.begin(), map->regions.end(),
            [](const cpu::RamRegion& a, const cpu::RamRegion& b) { return a.start < b.start; });
  m_source.publish(std::move(map));
}

Result<void> MemSlots::take_dirty_log(uint32_t slot, std::vector<uint64_t>& out) {
  const uint32_t as_id = slot >> 16;
  const uint32_t id = slot & 0xffff;
  if (as_id >= k_address_spaces || id >= k_user_mem_slots) return err(EINVAL);
  std::lock_guard<std::mutex> g(m_lock);
  auto it = m_slots[as_id].find(id);
  if (it == m_slots[as_id].end() || !it->second.dirty) return err(ENOENT);
  out.resize(it->second.dirty_words);
  for (size_t i = 0; i < out.size(); ++i) out[i] = it->second.dirty[i].exchange(0, std::memory_order_acq_rel);
  // Engines mark pages dirty when they fill a write translation: revoke them all
  // so the next write to each page is seen again.
  m_source.bump();
  return {};
}

}  // namespace anykvm::machine
