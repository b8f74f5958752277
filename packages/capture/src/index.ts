export { defaultCaptureParams, chainsOf, jumpsOf, ruleTables, type CaptureParams, type Chains } from "./rules.js";
export { installCapture, removeCapture, describeInstalled, type Capture } from "./capture.js";
export { missingTools, runTool, TOOLS } from "./exec.js";
