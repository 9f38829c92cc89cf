/** The version this client sends in WatchConfig and ReportStatus (ListWatchers shows it). */

/** The package version (`package.json`; a unit test keeps the two equal). */
export const CLIENT_VERSION = "0.1.0";
