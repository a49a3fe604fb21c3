// ESLint for the console's scripts (issue 22); run by scripts/lint-web with the pinned ESLint
// that scripts/bootstrap installs into .cache/lint.
import { createRequire } from "node:module";

const require = createRequire(new URL("../.cache/lint/", import.meta.url));
const js = require("@eslint/js");
const globals = require("globals");

export default [
  js.configs.recommended,
  {
    files: ["**/*.js"],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: "module",
      globals: { ...globals.browser },
    },
    rules: {
      eqeqeq: "error",
      "no-implicit-globals": "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-console": "error",
      "no-eval": "error",
      "no-implied-eval": "error",
      "no-new-func": "error",
      "no-restricted-properties": [
        "error",
        { property: "innerHTML", message: "build elements with dom.js el(): text never becomes markup" },
        { property: "outerHTML", message: "build elements with dom.js el()" },
      ],
      "no-restricted-syntax": [
        "error",
        { selector: "CallExpression[callee.property.name='insertAdjacentHTML']", message: "no markup from strings" },
      ],
    },
  },
];
