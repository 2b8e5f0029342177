// An OpenAI-style API error: the HTTP status and the body
// {"error": {"message", "type", "param", "code"}} that clients of that API know how to read.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace loom::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error",
           std::string param = {}, std::string code = {})
      : std::runtime_error(message),
        status_(status),
        type_(std::move(type)),
        param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }

  nlohmann::json body() const {
    nlohmann::json e;
    e["message"] = what();
    e["type"] = type_;
    e["param"] = param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_);
    e["code"] = code_.empty() ? nlohmann::json(nullptr) : nlohmann::json(code_);
    return nlohmann::json{{"error", e}};
  }

 private:
  int status_;
  std::string type_, param_, code_;
};

}  // namespace loom::serve
