import { parsePhoneNumberFromString, type CountryCode } from "libphonenumber-js";

/**
 * Phone numbers as Haven stores and dials them: E.164 (`+254712345678`). A number written the
 * local way (`0712 345 678`) is read in the default region (Kenya unless configured).
 */
export function normalisePhone(raw: string, region: string = "KE"): string | undefined {
  const parsed = parsePhoneNumberFromString(raw.trim(), region as CountryCode);
  if (!parsed || !parsed.isValid()) return undefined;
  return parsed.number;
}
