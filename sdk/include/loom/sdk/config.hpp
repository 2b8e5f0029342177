// Plugin configuration: a plugin declares the keys of its TOML table (name, type, default,
// range, help); the host validates the user's table against that schema once, rejects
// unknown keys, and hands the plugin a ConfigSection with every declared key resolved.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace loom::sdk {

enum class ConfigType { Bool, Int, Float, String };

inline const char* to_string(ConfigType t) {
  switch (t) {
    case ConfigType::Bool: return "bool";
    case ConfigType::Int: return "int";
    case ConfigType::Float: return "float";
    case ConfigType::String: return "string";
  }
  return "?";
}

using ConfigValue = std::variant<bool, std::int64_t, double, std::string>;

struct ConfigKey {
  std::string name;
  ConfigType type = ConfigType::String;
  // Unset default: the key is absent from the section unless the user gives it
  // (for "auto" behaviour, e.g. diffusion's mask_token_id).
  std::optional<ConfigValue> default_value;
  std::string help;
  std::optional<double> min;  // inclusive, for Int and Float
  std::optional<double> max;  // inclusive, for Int and Float
  std::vector<std::string> choices;  // for String: allowed values (empty = any)
};

// Builders so a schema reads as a table.
inline ConfigKey key_bool(std::string name, std::optional<bool> def, std::string help) {
  ConfigKey k{std::move(name), ConfigType::Bool, std::nullopt, std::move(help), {}, {}, {}};
  if (def) k.default_value = *def;
  return k;
}
inline ConfigKey key_int(std::string name, std::optional<std::int64_t> def, std::string help,
                         std::optional<double> min = {}, std::optional<double> max = {}) {
  ConfigKey k{std::move(name), ConfigType::Int, std::nullopt, std::move(help), min, max, {}};
  if (def) k.default_value = *def;
  return k;
}
inline ConfigKey key_float(std::string name, std::optional<double> def, std::string help,
                           std::optional<double> min = {}, std::optional<double> max = {}) {
  ConfigKey k{std::move(name), ConfigType::Float, std::nullopt, std::move(help), min, max, {}};
  if (def) k.default_value = *def;
  return k;
}
inline ConfigKey key_string(std::string name, std::optional<std::string> def, std::string help,
                            std::vector<std::string> choices = {}) {
  ConfigKey k{std::move(name), ConfigType::String, std::nullopt, std::move(help), {}, {},
              std::move(choices)};
  if (def) k.default_value = *def;
  return k;
}

// A plugin's validated table. Values already have the declared type (an Int given where a
// Float is declared has been widened).
class ConfigSection {
 public:
  ConfigSection() = default;
  ConfigSection(std::string name, std::map<std::string, ConfigValue> values)
      : name_(std::move(name)), values_(std::move(values)) {}

  const std::string& name() const { return name_; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  const std::map<std::string, ConfigValue>& values() const { return values_; }

  bool get_bool(const std::string& key) const { return get<bool>(key); }
  std::int64_t get_int(const std::string& key) const { return get<std::int64_t>(key); }
  double get_float(const std::string& key) const { return get<double>(key); }
  const std::string& get_string(const std::string& key) const { return get<std::string>(key); }

 private:
  template <class T>
  const T& get(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end())
      throw std::runtime_error("[" + name_ + "] " + key + " is not set");
    if (auto* v = std::get_if<T>(&it->second)) return *v;
    throw std::runtime_error("[" + name_ + "] " + key + " has a different type than requested");
  }

  std::string name_;
  std::map<std::string, ConfigValue> values_;
};

}  // namespace loom::sdk
