// UTF-8 helpers for the tokenizers: validation, lossy repair and code point access.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace loom::utf8 {

bool is_valid(std::string_view text);

// Replaces each invalid sequence with U+FFFD the way Rust's String::from_utf8_lossy does
// (one replacement per maximal invalid subpart), so decode() output matches Hugging Face's.
std::string repair(std::string_view text);

// Decodes the code point starting at `pos` of valid UTF-8 text and returns its length in
// bytes. Invalid bytes decode as themselves with length 1, so callers never loop forever.
std::size_t decode_at(std::string_view text, std::size_t pos, char32_t& code_point);

// Start of the code point that ends right before `end` (end > 0).
std::size_t previous_char_start(std::string_view text, std::size_t end);

void append(std::string& out, char32_t code_point);

// Unicode White_Space, as Rust's char::is_whitespace and regex \s see it.
bool is_white_space(char32_t code_point);

}  // namespace loom::utf8
