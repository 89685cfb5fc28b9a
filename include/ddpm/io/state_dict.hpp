#pragma once
// A model's flat parameter store (ddpm::Parameters) <-> a safetensors state_dict
// with diffusers' names.
//
//   io::load_state_dict(params, SafeTensors::load(path));  // all-or-nothing
//   io::state_dict_writer(params).save(path);               // atomic
//
// Loading verifies every tensor before it copies any: missing, unexpected and
// wrongly shaped tensors, and non-float dtypes, are collected and reported in
// ONE ddpm::Error, and on error the parameters are left unchanged. F16, BF16,
// F32 and F64 tensors are converted to T. A NaN or infinite weight (after
// conversion to T) is refused by name, as a one-line ddpm::Error such as
// "model.safetensors: conv_in.weight: non-finite value (nan) at element 17",
// unless StateDictLoadOptions::allow_non_finite is set. diffusers' legacy attention names
// (`query`, `key`, `value`, `proj_attn`, as in the google/ddpm-* checkpoints)
// are accepted and mapped to `to_q`, `to_k`, `to_v`, `to_out.0`.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/io/safetensors.hpp"

namespace ddpm::io {

// diffusers' _fix_state_dict_keys_on_load for the deprecated AttentionBlock:
// "<block>.query.weight" -> "<block>.to_q.weight" and so on. Other names are
// returned unchanged.
inline std::string modern_attention_name(const std::string& name) {
  static const std::pair<const char*, const char*> renames[] = {
      {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
  for (const auto& [old_part, new_part] : renames) {
    const std::string o = old_part;
    for (const char* leaf : {"weight", "bias"}) {
      const std::string tail = o + leaf;
      if (name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
        return name.substr(0, name.size() - tail.size()) + new_part + leaf;
    }
  }
  return name;
}

struct StateDictLoadOptions {
  bool accept_legacy_attention_names = true;
  // Names in the file that the model does not have are an error unless this is set.
  bool ignore_unexpected = false;
  // A NaN or infinite weight is an error naming the file and the tensor
  // unless this is set (a model with one samples NaN images).
  bool allow_non_finite = false;
};

namespace state_dict_detail {

inline std::string shape_str(const std::vector<index_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

inline void list(std::ostringstream& os, const char* what, const std::vector<std::string>& items) {
  if (items.empty()) return;
  os << "\n  " << items.size() << " " << what << ":";
  constexpr std::size_t kShown = 40;
  for (std::size_t i = 0; i < items.size() && i < kShown; ++i) os << "\n    " << items[i];
  if (items.size() > kShown) os << "\n    ... and " << items.size() - kShown << " more";
}

}  // namespace state_dict_detail

// Copies every parameter from `st` into `params`, or throws (changing nothing).
template <Scalar T>
void load_state_dict(Parameters<T>& params, const SafeTensors& st, const StateDictLoadOptions& opt = {}) {
  using namespace state_dict_detail;
  std::map<std::string, std::string> source;  // parameter name -> name in the file
  std::vector<std::string> unexpected, wrong, duplicated;
  for (const auto& [file_name, info] : st.tensors()) {
    std::string name = file_name;
    if (!params.contains(name) && opt.accept_legacy_attention_names) name = modern_attention_name(file_name);
    if (!params.contains(name)) {
      if (!opt.ignore_unexpected) unexpected.push_back(file_name + " " + shape_str(info.shape));
      continue;
    }
    if (auto [it, fresh] = source.emplace(name, file_name); !fresh) {
      duplicated.push_back(name + " (as '" + it->second + "' and '" + file_name + "')");
      continue;
    }
    const auto& p = params.info(params.id(name));
    const std::vector<index_t> want(p.shape.begin(), p.shape.end());
    const bool is_float = info.dtype == DType::F16 || info.dtype == DType::BF16 || info.dtype == DType::F32 ||
                          info.dtype == DType::F64;
    if (info.shape != want || !is_float)
      wrong.push_back(file_name + ": " + dtype_name(info.dtype) + " " + shape_str(info.shape) + ", expected " +
                      shape_str(want) + (is_float ? "" : " of a floating dtype (F16, BF16, F32, F64)"));
  }
  std::vector<std::string> missing;
  for (const auto& p : params.infos())
    if (!source.count(p.name)) missing.push_back(p.name + " " + p.shape.str());
  if (!missing.empty() || !unexpected.empty() || !wrong.empty() || !duplicated.empty()) {
    std::ostringstream os;
    os << st.path() << ": the weights do not match the model (" << params.count() << " parameters expected, "
       << st.tensors().size() << " tensors in the file); nothing was loaded";
    list(os, "missing", missing);
    list(os, "unexpected", unexpected);
    list(os, "with the wrong shape or dtype", wrong);
    list(os, "given twice (old and new attention names)", duplicated);
    throw Error(os.str());
  }
  // Converted first, checked, then copied: a refused file changes nothing.
  std::vector<std::pair<ParamId, Tensor<T>>> values;
  values.reserve(source.size());
  for (const auto& [name, file_name] : source) {
    Tensor<T> t = st.get<T>(file_name);
    if (!opt.allow_non_finite) {
      const auto bad = std::find_if(t.begin(), t.end(), [](T v) { return !std::isfinite(v); });
      if (bad != t.end())
        fail(st.path(), ": ", file_name, ": non-finite value (", std::isnan(*bad) ? "nan" : *bad > 0 ? "inf" : "-inf",
             ") at element ", bad - t.begin(), " (StateDictLoadOptions::allow_non_finite accepts it)");
    }
    values.emplace_back(params.id(name), std::move(t));
  }
  for (const auto& [id, t] : values) std::copy(t.begin(), t.end(), params.value(id).begin());
}

// Every parameter under its diffusers name, as T (F32 for float, F64 for double).
template <Scalar T>
SafeTensorsWriter state_dict_writer(const Parameters<T>& params) {
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  for (std::size_t i = 0; i < params.count(); ++i) {
    const auto id = static_cast<ParamId>(i);
    w.add(params.info(id).name, params.value(id));
  }
  return w;
}

}  // namespace ddpm::io
