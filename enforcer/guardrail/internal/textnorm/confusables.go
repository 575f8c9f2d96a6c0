package textnorm

import "unicode"

// toLatin maps Cyrillic and Greek letters that look like a Latin letter to
// that letter, keeping case. It is applied to words that mix scripts (or
// that are written entirely in look-alikes inside Latin text), so that
// "іgnоrе" (Cyrillic і, о, е) reads as "ignore". A word in one script is
// left alone: Russian and Greek text keeps its letters.
func toLatin(r rune) (rune, bool) {
	switch r {
	case 'а', 'α':
		return 'a', true
	case 'в':
		return 'b', true
	case 'е', 'ё', 'ε':
		return 'e', true
	case 'і', 'ї', 'ι':
		return 'i', true
	case 'ј':
		return 'j', true
	case 'к', 'κ':
		return 'k', true
	case 'м':
		return 'm', true
	case 'н', 'һ':
		return 'h', true
	case 'о', 'ο':
		return 'o', true
	case 'р', 'ρ':
		return 'p', true
	case 'с':
		return 'c', true
	case 'т', 'τ':
		return 't', true
	case 'у', 'ү', 'γ':
		return 'y', true
	case 'х', 'χ':
		return 'x', true
	case 'ѕ':
		return 's', true
	case 'ԁ':
		return 'd', true
	case 'ԛ':
		return 'q', true
	case 'ԝ':
		return 'w', true
	case 'ӏ':
		return 'l', true
	case 'А', 'Α':
		return 'A', true
	case 'В', 'Β':
		return 'B', true
	case 'Е', 'Ε':
		return 'E', true
	case 'Ѕ':
		return 'S', true
	case 'І', 'Ӏ', 'Ι':
		return 'I', true
	case 'Ј':
		return 'J', true
	case 'К', 'Κ':
		return 'K', true
	case 'М', 'Μ':
		return 'M', true
	case 'Н', 'Һ', 'Η':
		return 'H', true
	case 'О', 'Ο':
		return 'O', true
	case 'Р', 'Ρ':
		return 'P', true
	case 'С':
		return 'C', true
	case 'Т', 'Τ':
		return 'T', true
	case 'Х', 'Χ':
		return 'X', true
	case 'У', 'Ү', 'Υ':
		return 'Y', true
	case 'Ԛ':
		return 'Q', true
	case 'Ԝ':
		return 'W', true
	case 'ν':
		return 'v', true
	case 'υ':
		return 'u', true
	case 'η':
		return 'n', true
	case 'Ζ':
		return 'Z', true
	case 'Ν':
		return 'N', true
	}
	return r, false
}

// latinLookalike maps letters of the Latin script that NFKC keeps but that
// read as a plain Latin letter (IPA, small capitals, dotless i). They are
// folded wherever they appear.
func latinLookalike(r rune) (rune, bool) {
	switch r {
	case 'ı', 'ɩ', 'ɪ':
		return 'i', true
	case 'ɑ', 'ᴀ':
		return 'a', true
	case 'ʏ':
		return 'y', true
	case 'ʙ':
		return 'b', true
	case 'ᴄ':
		return 'c', true
	case 'ᴅ':
		return 'd', true
	case 'ᴇ':
		return 'e', true
	case 'ɢ', 'ɡ':
		return 'g', true
	case 'ʜ':
		return 'h', true
	case 'ᴊ':
		return 'j', true
	case 'ᴋ':
		return 'k', true
	case 'ʟ':
		return 'l', true
	case 'ᴍ':
		return 'm', true
	case 'ɴ':
		return 'n', true
	case 'ᴏ':
		return 'o', true
	case 'ᴘ':
		return 'p', true
	case 'ʀ':
		return 'r', true
	case 'ꜱ':
		return 's', true
	case 'ᴛ':
		return 't', true
	case 'ᴜ':
		return 'u', true
	case 'ᴠ':
		return 'v', true
	case 'ᴡ':
		return 'w', true
	case 'ᴢ':
		return 'z', true
	}
	return r, false
}

// toCyrillic maps Latin letters that look like a Cyrillic one, for words
// that are mostly Cyrillic: "игнорирyй" with a Latin y reads as Russian.
func toCyrillic(r rune) (rune, bool) {
	switch r {
	case 'a':
		return 'а', true
	case 'c':
		return 'с', true
	case 'e':
		return 'е', true
	case 'o':
		return 'о', true
	case 'p':
		return 'р', true
	case 'x':
		return 'х', true
	case 'y':
		return 'у', true
	case 'k':
		return 'к', true
	case 'A':
		return 'А', true
	case 'B':
		return 'В', true
	case 'C':
		return 'С', true
	case 'E':
		return 'Е', true
	case 'H':
		return 'Н', true
	case 'K':
		return 'К', true
	case 'M':
		return 'М', true
	case 'O':
		return 'О', true
	case 'P':
		return 'Р', true
	case 'T':
		return 'Т', true
	case 'X':
		return 'Х', true
	}
	return r, false
}

type script uint8

const (
	scriptOther script = iota
	scriptLatin
	scriptCyrillic
	scriptGreek
)

func scriptOf(r rune) script {
	switch {
	case r < 0x80:
		if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return scriptLatin
		}
		return scriptOther
	case unicode.Is(unicode.Latin, r):
		return scriptLatin
	case unicode.Is(unicode.Cyrillic, r):
		return scriptCyrillic
	case unicode.Is(unicode.Greek, r):
		return scriptGreek
	}
	return scriptOther
}
