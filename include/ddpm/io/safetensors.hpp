#pragma once
// The safetensors format (https://github.com/huggingface/safetensors):
//   8-byte little-endian header length N | N bytes of JSON | raw tensor data.
// The JSON maps each name to {dtype, shape, data_offsets: [begin, end)} relative
// to the first data byte, plus an optional "__metadata__" string map.
//
// Reading checks everything before any value is used: the header length
// against the file size, each dtype, that shapes and offsets agree, that no
// two tensors overlap and that names are unique. F16 and BF16 are read and
// widened; F32, F64 and I64 are read and written.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::io {

static_assert(std::endian::native == std::endian::little, "ddpm's safetensors I/O assumes a little-endian host");

enum class DType { F16, BF16, F32, F64, I8, U8, I16, I32, I64, BOOL };

inline std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::F32: case DType::I32: return 4;
    case DType::F64: case DType::I64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

inline std::optional<DType> parse_dtype(std::string_view s) {
  for (DType d : {DType::F16, DType::BF16, DType::F32, DType::F64, DType::I8, DType::U8, DType::I16, DType::I32,
                  DType::I64, DType::BOOL})
    if (s == dtype_name(d)) return d;
  return std::nullopt;
}

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::I64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DType::I32;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return DType::U8;
  else static_assert(sizeof(T) == 0, "no safetensors dtype for this type");
}

// IEEE half -> float, exact (every half is a float).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    exp = 113;
    while (!(mant & 0x400u)) mant <<= 1, --exp;
    bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}
inline float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t{b} << 16); }

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<index_t> shape;
  std::size_t begin = 0, end = 0;  // byte range within the data section
  index_t numel() const {
    index_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// A safetensors file held in memory, validated on load.
class SafeTensors {
 public:
  static constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

  static SafeTensors load(const std::filesystem::path& path) {
    SafeTensors st;
    st.path_ = path.string();
    st.bytes_ = read_file(path);
    st.parse();
    return st;
  }
  // Parses bytes already in memory; `origin` names them in error messages.
  static SafeTensors from_bytes(std::vector<char> bytes, std::string origin = "<memory>") {
    SafeTensors st;
    st.path_ = std::move(origin);
    st.bytes_ = std::move(bytes);
    st.parse();
    return st;
  }

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return infos_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (auto& [k, v] : infos_) out.push_back(k);
    return out;
  }

  const TensorInfo& info(const std::string& name) const {
    auto it = infos_.find(name);
    require(it != infos_.end(), path_, ": no tensor named '", name, "'");
    return it->second;
  }

  // The tensor converted to T (any floating dtype, or integers to float).
  template <Scalar T>
  Tensor<T> get(const std::string& name) const {
    const TensorInfo& ti = info(name);
    Tensor<T> out(Shape(ti.shape.begin(), ti.shape.end()));
    convert_into(ti, out.data());
    return out;
  }

  // Integer tensors (labels, timesteps) as int64; floats are rejected.
  std::vector<std::int64_t> get_int64(const std::string& name) const {
    const TensorInfo& ti = info(name);
    std::vector<std::int64_t> out(static_cast<std::size_t>(ti.numel()));
    const char* p = data_begin() + ti.begin;
    for (std::size_t i = 0; i < out.size(); ++i) {
      switch (ti.dtype) {
        case DType::I64: out[i] = load<std::int64_t>(p, i); break;
        case DType::I32: out[i] = load<std::int32_t>(p, i); break;
        case DType::I16: out[i] = load<std::int16_t>(p, i); break;
        case DType::I8: out[i] = load<std::int8_t>(p, i); break;
        case DType::U8: case DType::BOOL: out[i] = load<std::uint8_t>(p, i); break;
        default: fail(path_, ": tensor '", name, "': expected an integer dtype, got ", dtype_name(ti.dtype));
      }
    }
    return out;
  }

 private:
  template <class U>
  static U load(const char* p, std::size_t i) {
    U v;
    std::memcpy(&v, p + i * sizeof(U), sizeof(U));
    return v;
  }

  const char* data_begin() const { return bytes_.data() + 8 + header_len_; }

  template <class T>
  void convert_into(const TensorInfo& ti, T* out) const {
    const char* p = data_begin() + ti.begin;
    const auto n = static_cast<std::size_t>(ti.numel());
    for (std::size_t i = 0; i < n; ++i) {
      switch (ti.dtype) {
        case DType::F32: out[i] = static_cast<T>(load<float>(p, i)); break;
        case DType::F64: out[i] = static_cast<T>(load<double>(p, i)); break;
        case DType::F16: out[i] = static_cast<T>(half_to_float(load<std::uint16_t>(p, i))); break;
        case DType::BF16: out[i] = static_cast<T>(bf16_to_float(load<std::uint16_t>(p, i))); break;
        case DType::I64: out[i] = static_cast<T>(load<std::int64_t>(p, i)); break;
        case DType::I32: out[i] = static_cast<T>(load<std::int32_t>(p, i)); break;
        case DType::I16: out[i] = static_cast<T>(load<std::int16_t>(p, i)); break;
        case DType::I8: out[i] = static_cast<T>(load<std::int8_t>(p, i)); break;
        case DType::U8: case DType::BOOL: out[i] = static_cast<T>(load<std::uint8_t>(p, i)); break;
      }
    }
  }

  void parse() {
    require(bytes_.size() >= 8, path_, ": not a safetensors file: ", bytes_.size(),
            " bytes, expected at least the 8-byte header length");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    require(n <= kMaxHeaderBytes, path_, ": header length ", n, " exceeds the ", kMaxHeaderBytes, "-byte limit");
    require(n <= bytes_.size() - 8, path_, ": header length ", n, " is larger than the ", bytes_.size() - 8,
            " bytes that follow it (truncated file?)");
    header_len_ = static_cast<std::size_t>(n);
    const std::size_t data_size = bytes_.size() - 8 - header_len_;

    // Parse, rejecting duplicate top-level names (nlohmann keeps the last silently).
    std::set<std::string> seen;
    std::string duplicate;
    nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t ev,
                                                     nlohmann::json& parsed) {
      if (ev == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string() &&
          !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    };
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + static_cast<std::ptrdiff_t>(header_len_),
                                     on_event);
    } catch (const nlohmann::json::exception& e) {
      fail(path_, ": header is not valid JSON: ", e.what());
    }
    require(duplicate.empty(), path_, ": tensor name '", duplicate, "' appears twice in the header");
    require(header.is_object(), path_, ": header must be a JSON object");

    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    for (auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        require(entry.is_object(), path_, ": __metadata__ must be an object of strings");
        for (auto& [k, v] : entry.items()) {
          require(v.is_string(), path_, ": __metadata__['", k, "'] must be a string");
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      const std::string where = path_ + ": tensor '" + name + "'";
      require(entry.is_object(), where, ": entry must be an object");
      require(entry.contains("dtype") && entry["dtype"].is_string(), where, ": 'dtype' missing or not a string");
      const auto dt = parse_dtype(entry["dtype"].get<std::string>());
      require(dt.has_value(), where, ": unsupported dtype '", entry["dtype"].get<std::string>(),
              "' (expected F16, BF16, F32, F64, I8, U8, I16, I32, I64 or BOOL)");
      require(entry.contains("shape") && entry["shape"].is_array(), where, ": 'shape' missing or not an array");
      require(entry.contains("data_offsets") && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2,
              where, ": 'data_offsets' must be an array [begin, end]");
      TensorInfo ti;
      ti.name = name;
      ti.dtype = *dt;
      // Element count with overflow checks: a header may claim absurd shapes.
      std::uint64_t count = 1;
      for (auto& d : entry["shape"]) {
        require(d.is_number_unsigned() || (d.is_number_integer() && d.get<std::int64_t>() >= 0), where,
                ": shape entries must be non-negative integers");
        const auto v = d.get<std::uint64_t>();
        require(v == 0 || count <= (std::uint64_t{1} << 62) / v, where, ": shape is too large");
        count *= v;
        ti.shape.push_back(static_cast<index_t>(v));
      }
      require(ti.shape.size() <= static_cast<std::size_t>(Shape::kMaxRank), where, ": rank ", ti.shape.size(),
              " above the supported ", Shape::kMaxRank);
      for (auto& o : entry["data_offsets"])
        require(o.is_number_unsigned() || (o.is_number_integer() && o.get<std::int64_t>() >= 0), where,
                ": data_offsets must be non-negative integers");
      const auto b = entry["data_offsets"][0].get<std::uint64_t>(), e = entry["data_offsets"][1].get<std::uint64_t>();
      require(b <= e && e <= data_size, where, ": data_offsets [", b, ", ", e, ") outside the ", data_size,
              "-byte data section");
      require(count <= (std::uint64_t{1} << 62) / dtype_size(*dt), where, ": shape and dtype need ", count, " x ",
              dtype_size(*dt), " bytes, more than 2^62");
      require(e - b == count * dtype_size(*dt), where, ": data_offsets span ", e - b,
              " bytes but shape and dtype need ", count * dtype_size(*dt));
      ti.begin = static_cast<std::size_t>(b);
      ti.end = static_cast<std::size_t>(e);
      if (ti.end > ti.begin) ranges.emplace_back(ti.begin, ti.end);
      infos_.emplace(name, std::move(ti));
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
      require(ranges[i].first >= ranges[i - 1].second, path_, ": two tensors overlap in the data section at byte ",
              ranges[i].first);
  }

  std::string path_;
  std::vector<char> bytes_;
  std::size_t header_len_ = 0;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
};

// Collects named tensors and writes them as one safetensors file.
class SafeTensorsWriter {
 public:
  template <class T>
  void add(const std::string& name, const T* data, std::span<const index_t> shape) {
    require(!name.empty() && name != "__metadata__", "safetensors writer: invalid tensor name '", name, "'");
    require(!index_.count(name), "safetensors writer: tensor '", name, "' added twice");
    Entry e{name, dtype_of<T>(), {shape.begin(), shape.end()}, {}};
    index_t n = 1;
    for (auto d : shape) n *= d;
    e.bytes.resize(static_cast<std::size_t>(n) * sizeof(T));
    if (n > 0) std::memcpy(e.bytes.data(), data, e.bytes.size());
    index_[name] = entries_.size();
    entries_.push_back(std::move(e));
  }
  template <class T>
  void add(const std::string& name, ConstTensorView<T> t) {
    add(name, t.data(), std::span<const index_t>(t.shape().begin(), t.shape().end()));
  }
  template <class T>
  void add(const std::string& name, const Tensor<T>& t) { add(name, t.view()); }
  void add_int64(const std::string& name, const std::vector<std::int64_t>& v, std::vector<index_t> shape = {}) {
    if (shape.empty()) shape = {static_cast<index_t>(v.size())};
    add(name, v.data(), std::span<const index_t>(shape));
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // The serialised file. Tensors are laid out in name order, as the Python
  // implementation does, with the header padded with spaces to 8 bytes.
  std::vector<char> bytes() const {
    std::vector<const Entry*> order;
    for (auto& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::size_t offset = 0;
    for (auto* e : order) {
      header[e->name] = {{"dtype", dtype_name(e->dtype)}, {"shape", e->shape},
                         {"data_offsets", {offset, offset + e->bytes.size()}}};
      offset += e->bytes.size();
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::vector<char> out(8 + h.size() + offset);
    const std::uint64_t n = h.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, h.data(), h.size());
    char* p = out.data() + 8 + h.size();
    for (auto* e : order) {
      if (!e->bytes.empty()) std::memcpy(p, e->bytes.data(), e->bytes.size());
      p += e->bytes.size();
    }
    return out;
  }

  // Writes atomically: the old file at `path`, if any, survives a failed write.
  void save(const std::filesystem::path& path) const {
    const auto b = bytes();
    write_file_atomically(path, [&](std::ostream& out) { write_bytes(out, b.data(), b.size()); });
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<index_t> shape;
    std::vector<char> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ddpm::io
