// Command-line parsing shared by the Bun benchmarks: `bun benches/X.ts LOG [--flag value]…`.

/// The value after `name`, or `fallback`.
export function arg(name: string, fallback: string): string {
	const at = process.argv.indexOf(name);
	return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

/// The LOG argument; prints `usage` and exits when it is missing.
export function logPathOrUsage(usage: string): string {
	const logPath = process.argv[2];
	if (!logPath || logPath.startsWith("--")) {
		console.error(`usage: ${usage}`);
		process.exit(2);
	}
	return logPath;
}
