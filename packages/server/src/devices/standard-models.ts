import { codeSystems, type DeviceModelPolicy } from '@ward/core'

const loinc = (code: string) => ({ system: codeSystems.loinc, code })
const mdc = (code: string) => ({ system: codeSystems.mdc, code })
const bit = (code: string) => ({ system: 'http://terminology.hl7.org/CodeSystem/ASN1ToHL7', code })
const quantity = (...units: [string, number, number][]) => ({
  kind: 'quantity' as const,
  units: units.map(([unit, min, max]) => ({ unit, min, max })),
})

/** ISO/IEEE 11073 supplemental types (spot, continuous…) that personal health devices attach. */
const supplementalTypes = { codes: [mdc('68193')], value: { kind: 'coded' as const } }

const pulseRate = {
  codes: [loinc('8867-4'), mdc('149530')],
  display: 'Pulse rate',
  value: quantity(['/min', 20, 300]),
  components: [supplementalTypes],
}

/** Bit-field status observations: each set bit is a boolean component. */
function status(
  code: string,
  display: string,
  bits: number,
): DeviceModelPolicy['measurements'][number] {
  return {
    codes: [mdc(code)],
    display,
    value: { kind: 'none' },
    components: [
      {
        codes: Array.from({ length: Math.min(bits, 8) }, (_, i) => bit(`${code}.${i}`)),
        value: { kind: 'boolean' },
      },
      ...(bits > 8
        ? [
            {
              codes: Array.from({ length: Math.min(bits - 8, 8) }, (_, i) =>
                bit(`${code}.${i + 8}`),
              ),
              value: { kind: 'boolean' as const },
            },
          ]
        : []),
    ],
  }
}

/**
 * Device models for the four kinds of personal health device Ward's demo streams, after the
 * HL7 Personal Health Device implementation guide: the measurements each may send by LOINC and
 * MDC code, their UCUM units and physiologically plausible ranges, and a rate cap. A reading
 * outside these — another code, another unit, an implausible value — is rejected with a reason.
 */
export const standardDeviceModels: readonly {
  name: string
  manufacturer: string
  policy: DeviceModelPolicy
}[] = [
  {
    name: 'Pulse oximeter',
    manufacturer: 'Nonin Medical',
    policy: {
      maxReadingsPerMinute: 600,
      measurements: [
        {
          codes: [loinc('2708-6'), loinc('59408-5'), mdc('150456')],
          display: 'Oxygen saturation',
          value: quantity(['%', 50, 100]),
          components: [supplementalTypes],
        },
        pulseRate,
        {
          codes: [mdc('150320')],
          display: 'Pulse oximetry signal quality',
          value: quantity(['%', 0, 255]),
        },
        status('150604', 'Pulse oximeter device status', 16),
      ],
    },
  },
  {
    name: 'Blood pressure cuff',
    manufacturer: 'Omron Healthcare',
    policy: {
      maxReadingsPerMinute: 60,
      measurements: [
        {
          codes: [loinc('85354-9'), mdc('150020')],
          display: 'Blood pressure',
          value: { kind: 'none' },
          components: [
            { codes: [loinc('8480-6'), mdc('150021')], value: quantity(['mm[Hg]', 40, 300]) },
            { codes: [loinc('8462-4'), mdc('150022')], value: quantity(['mm[Hg]', 20, 250]) },
            { codes: [loinc('8478-0'), mdc('150023')], value: quantity(['mm[Hg]', 20, 250]) },
          ],
        },
        pulseRate,
        status('8410608', 'Blood pressure measurement status', 8),
      ],
    },
  },
  {
    name: 'Glucose meter',
    manufacturer: 'Diabetes Care',
    policy: {
      maxReadingsPerMinute: 60,
      measurements: [
        {
          codes: [mdc('160368'), loinc('2339-0'), loinc('15074-8'), loinc('41653-7')],
          display: 'Glucose',
          value: quantity(['mg/dL', 10, 1000], ['mmol/L', 0.5, 55]),
        },
        { codes: [mdc('8417864')], display: 'Glucose meal context', value: { kind: 'coded' } },
      ],
    },
  },
  {
    name: 'Weight scale',
    manufacturer: 'Ward Demo Scales',
    policy: {
      maxReadingsPerMinute: 60,
      measurements: [
        {
          codes: [loinc('29463-7'), loinc('3141-9'), mdc('188736')],
          display: 'Body weight',
          value: quantity(['kg', 0.5, 500], ['g', 500, 500_000], ['[lb_av]', 1, 1100]),
        },
        {
          codes: [loinc('39156-5'), mdc('188752')],
          display: 'Body mass index',
          value: quantity(['kg/m2', 5, 100]),
        },
      ],
    },
  },
]
